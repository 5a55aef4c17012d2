// The Worker bundle (edge/build, from scripts/build-edge.sh) on workerd through Miniflare's API,
// with the bindings of wrangler.toml, in memory, and no inspector attached: the same runtime
// `wrangler dev` uses, without wrangler's dev proxy and without the inspector that relays
// console logs to wrangler. Used by `gateway-bench` for the "edge, workerd without wrangler"
// rows; it runs until SIGTERM.
//
//   node bench/edge-miniflare.mjs PORT VARS_JSON
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Miniflare, Log, LogLevel } from "miniflare";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const port = Number(process.argv[2]);
const vars = JSON.parse(process.argv[3] ?? "{}");

const mf = new Miniflare({
  host: "127.0.0.1",
  port,
  log: new Log(LogLevel.WARN),
  modules: true,
  modulesRoot: path.join(root, "edge/build"),
  scriptPath: path.join(root, "edge/build/index.js"),
  modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"] }],
  compatibilityDate: "2026-04-01",
  compatibilityFlags: ["enable_request_signal"],
  kvNamespaces: { GATEWAY_KV: "gateway-kv" },
  durableObjects: {
    GATEWAY_STATE: { className: "GatewayState", useSQLite: true },
    GATEWAY_RATE: { className: "RateLimiter", useSQLite: true },
  },
  bindings: { GATEWAY_ISSUER: "ai-gateway", GATEWAY_AUDIENCE: "ai-gateway", GATEWAY_CACHE_SECONDS: "5", ...vars },
  // Offline: the default `Request.cf` object instead of fetching one.
  cf: false,
});
const url = await mf.ready;
console.log(`ready ${url}`);
const stop = async () => {
  await mf.dispose();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
