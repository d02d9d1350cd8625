#!/bin/sh
# Starts nginx in the compose stack (deploy/docker-compose.yml) on deploy/nginx.conf: the file
# the cluster tests run and CI checks with `nginx -t`, so the stack's proxy settings are the
# tested ones. That file names the nodes 127.0.0.1:3001 and 127.0.0.1:3002 (two processes on
# one host); here each of those upstream addresses is replaced by the stack node it stands for,
# as listed in SPLITSAVE_UPSTREAMS ("127.0.0.1:3001=172.30.80.11:3000 ..."), the way the tests
# replace them with their own nodes. Access and error logs go to the container's output.
#
#   nginx-start.sh              render the configuration and run nginx in the foreground
#   nginx-start.sh render CONF  print the configuration rendered from CONF and exit
set -eu

render() {
  conf=$(cat "$1")
  for pair in ${SPLITSAVE_UPSTREAMS:?SPLITSAVE_UPSTREAMS names no upstream}; do
    from=${pair%%=*}
    to=${pair#*=}
    case $conf in
      *"server $from "*) ;;
      *)
        echo "nginx-start: $1 has no upstream 'server $from'" >&2
        exit 1
        ;;
    esac
    from_pattern=$(printf '%s' "$from" | sed 's/[.]/\\./g')
    conf=$(printf '%s\n' "$conf" | sed "s|server $from_pattern |server $to |")
  done
  # An upstream server the list does not map would point nginx at its own container.
  if printf '%s\n' "$conf" | grep -q '^[[:space:]]*server 127\.0\.0\.1:'; then
    echo "nginx-start: $1 has upstream servers SPLITSAVE_UPSTREAMS does not map" >&2
    exit 1
  fi
  printf '%s\n' "$conf"
}

if [ "${1:-}" = render ]; then
  render "$2"
  exit 0
fi

prefix=/var/cache/splitsave-nginx
mkdir -p "$prefix/logs" "$prefix/tmp"
ln -sf /dev/stdout "$prefix/logs/access.log"
ln -sf /dev/stderr "$prefix/logs/error.log"
render /etc/splitsave/nginx.conf >"$prefix/nginx.conf"
exec nginx -p "$prefix/" -c "$prefix/nginx.conf" -g 'daemon off;'
