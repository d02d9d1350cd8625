/**
 * The built app (dist/, from `npm run build`) served by `vite preview` on a free port, proxying
 * /api and /sync to `serverUrl`; and Debian's Chromium driven by playwright-core.
 */
import { createServer } from "node:net"
import { fileURLToPath } from "node:url"
import { chromium } from "playwright-core"
import { preview } from "vite"

const appDir = fileURLToPath(new URL("..", import.meta.url))

/**
 * A port nobody listens on now. The app's origin must be known before the SplitSave server
 * starts (its CORS_ORIGIN must allow the browser's Origin on /sync), so the port is chosen first.
 */
export function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer().listen(0, "127.0.0.1", () => {
      const { port } = probe.address()
      probe.close(() => resolve(port))
    })
    probe.on("error", reject)
  })
}

/** `vite preview` on `port`, in this process, with vite.config.ts (which reads SPLITSAVE_SERVER). */
export async function startPreview(serverUrl, port) {
  process.env.SPLITSAVE_SERVER = serverUrl
  const server = await preview({ root: appDir, logLevel: "warn", preview: { host: "127.0.0.1", port, strictPort: true } })
  return { url: `http://127.0.0.1:${port}`, stop: () => server.close() }
}

export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium"

export function launchChromium() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  })
}
