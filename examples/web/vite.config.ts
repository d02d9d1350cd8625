// The app is served by Vite (dev, port 5173) or `vite preview` (the built app, port 4173); both
// proxy the REST API and the sync WebSocket to the SplitSave server, so the browser talks to one
// origin (no CORS). The server still checks the browser's Origin on /sync: its CORS_ORIGIN must
// list the app's origin (README.md).
import { defineConfig } from "vite"
import wasm from "vite-plugin-wasm"

const server = process.env.SPLITSAVE_SERVER ?? "http://127.0.0.1:3000"
const proxy = {
  "/api": { target: server, changeOrigin: true },
  "/sync": { target: server, changeOrigin: true, ws: true },
}

export default defineConfig({
  // Automerge's browser entry imports its WebAssembly as an ES module: vite-plugin-wasm loads
  // it, and the esnext target keeps the top-level await that comes with it.
  plugins: [wasm()],
  build: { target: "esnext" },
  server: { port: 5173, strictPort: true, proxy },
  preview: { port: 4173, strictPort: true, proxy },
})
