//! What Prometheus would do to a node with metrics on: `GET /metrics` on its metrics listener
//! once a second for as long as the session runs. The scrapes' own cost (rendering every
//! series, reading /proc, counting the outbox) is part of what metrics cost a node, so it lands
//! in the measured windows as it would in production. The last scrape, taken after the load,
//! shows what the node counted: proof that the registry was on and recording.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::Percentiles;

/// How often a Prometheus server scrapes a target in a common configuration.
pub(crate) const EVERY: Duration = Duration::from_secs(1);
/// Longest wait for one scrape; Prometheus's own default timeout is 10 s, but a scrape this
/// slow would already say enough.
const TIMEOUT: Duration = Duration::from_secs(5);

/// What the scrapes of one session saw.
#[derive(Debug, Default)]
pub(crate) struct ScrapeFigures {
    pub(crate) scrapes: u64,
    pub(crate) failed: u64,
    pub(crate) first_failure: Option<String>,
    /// Request sent -> whole text read.
    pub(crate) duration: Option<Percentiles>,
    /// Size of the last scrape's text, bytes.
    pub(crate) bytes: Option<usize>,
    /// From the last scrape: merges the node counted (`source` sync, rest) and HTTP requests.
    pub(crate) merges_sync: Option<f64>,
    pub(crate) merges_rest: Option<f64>,
    pub(crate) http_requests: Option<f64>,
}

/// A running scraper; [`Scraper::finish`] stops it.
pub(crate) struct Scraper {
    stop: oneshot::Sender<()>,
    task: JoinHandle<ScrapeFigures>,
}

impl Scraper {
    /// Starts scraping `http://{addr}/metrics` every [`EVERY`].
    pub(crate) fn start(addr: SocketAddr) -> Self {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(scrape_until(format!("http://{addr}/metrics"), stopped));
        Self { stop, task }
    }

    /// Stops after one last scrape and returns the figures.
    pub(crate) async fn finish(self) -> ScrapeFigures {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

async fn scrape_until(url: String, mut stopped: oneshot::Receiver<()>) -> ScrapeFigures {
    let mut figures = ScrapeFigures::default();
    let http = match reqwest::Client::builder().timeout(TIMEOUT).build() {
        Ok(h) => h,
        Err(e) => {
            figures.first_failure = Some(e.to_string());
            return figures;
        }
    };
    let mut took = Vec::new();
    let mut last = None;
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = &mut stopped => true,
        };
        let sent = Instant::now();
        let text = async {
            http.get(&url)
                .send()
                .await?
                .error_for_status()?
                .text()
                .await
        };
        match text.await {
            Ok(t) => {
                took.push(sent.elapsed().as_micros() as u64);
                figures.scrapes += 1;
                last = Some(t);
            }
            Err(e) => {
                figures.failed += 1;
                figures.first_failure.get_or_insert_with(|| e.to_string());
            }
        }
        if stopping {
            break;
        }
    }
    figures.duration = Percentiles::of(took);
    if let Some(text) = last {
        figures.bytes = Some(text.len());
        figures.merges_sync = sum_series(&text, "splitsave_merges_total", Some(("source", "sync")));
        figures.merges_rest = sum_series(&text, "splitsave_merges_total", Some(("source", "rest")));
        figures.http_requests = sum_series(&text, "splitsave_http_requests_total", None);
    }
    figures
}

/// The sum of the samples of metric `name` in a Prometheus text exposition, only those with
/// label `key="value"` when given; None when there is no such sample. Label values may hold
/// braces (route templates such as `/api/expenses/{id}`), so a series' labels end at its last
/// `}`.
pub(crate) fn sum_series(text: &str, name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    let wanted = label.map(|(k, v)| format!("{k}=\"{v}\""));
    let mut sum = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || !line.starts_with(name) {
            continue;
        }
        let rest = &line[name.len()..];
        let (labels, value) = match rest.strip_prefix('{') {
            Some(inner) => match inner.rfind('}') {
                Some(end) => (&inner[..end], &inner[end + 1..]),
                None => continue,
            },
            None if rest.starts_with(' ') => ("", rest),
            None => continue,
        };
        if let Some(w) = &wanted {
            let matches = labels
                .match_indices(w.as_str())
                .any(|(i, _)| i == 0 || labels[..i].ends_with(','));
            if !matches {
                continue;
            }
        }
        let Some(v) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        else {
            continue;
        };
        *sum.get_or_insert(0.0) += v;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP splitsave_merges merges committed.
# TYPE splitsave_merges counter
splitsave_merges_total{source="sync"} 1200
splitsave_merges_total{source="rest"} 34
splitsave_http_requests_total{route="/api/expenses/{id}",method="GET",status="200"} 5
splitsave_http_requests_total{route="/api/expenses",method="POST",status="201"} 7
splitsave_http_requests_total_extra{route="x"} 1000
splitsave_live_documents 12
# EOF
"#;

    #[test]
    fn series_are_summed_by_name_and_label_braces_in_values_do_not_cut_them() {
        assert_eq!(
            sum_series(TEXT, "splitsave_merges_total", Some(("source", "sync"))),
            Some(1200.0)
        );
        assert_eq!(
            sum_series(TEXT, "splitsave_merges_total", None),
            Some(1234.0)
        );
        // Another metric whose name starts with this one's is not counted.
        assert_eq!(
            sum_series(TEXT, "splitsave_http_requests_total", None),
            Some(12.0)
        );
        assert_eq!(
            sum_series(
                TEXT,
                "splitsave_http_requests_total",
                Some(("method", "GET"))
            ),
            Some(5.0)
        );
        assert_eq!(
            sum_series(TEXT, "splitsave_live_documents", None),
            Some(12.0)
        );
    }

    #[test]
    fn a_label_must_match_whole_and_an_absent_metric_is_none() {
        // `source="rest"` must not match the end of another label.
        let text = "m_total{xsource=\"rest\",source=\"sync\"} 3\n";
        assert_eq!(sum_series(text, "m_total", Some(("source", "rest"))), None);
        assert_eq!(
            sum_series(text, "m_total", Some(("source", "sync"))),
            Some(3.0)
        );
        assert_eq!(sum_series(TEXT, "splitsave_absent_total", None), None);
    }
}
