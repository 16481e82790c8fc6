// Node.js baseline for the bullflow benchmarks: FlowProducer.add of N trees (one parent with K
// children each), C at a time, straight into Redis. Prints one JSON line:
//   {"wall_s": ..., "latencies_ms": [...], "bullmq": "x.y.z"}
// Usage: node bench/flowproducer.mjs --redis-url URL --prefix P --flows N --children K
//          --concurrency C --parent-queue Q --child-queue Q [--id-prefix S]
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

// bullmq + ioredis come from the interop tests' node_modules (make npm-deps).
const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, "..", "tests", "interop", "package.json"));
const { FlowProducer } = require("bullmq");
const IORedis = require("ioredis");
const bullmqVersion = require("bullmq/package.json").version;

function parseArgs(argv) {
  const args = {
    flows: 1, children: 2, concurrency: 64, prefix: "bull", idPrefix: "nb",
    parentQueue: "parent", childQueue: "child",
  };
  const names = {
    "--redis-url": "redisUrl", "--prefix": "prefix", "--flows": "flows",
    "--children": "children", "--concurrency": "concurrency", "--parent-queue": "parentQueue",
    "--child-queue": "childQueue", "--id-prefix": "idPrefix",
  };
  for (let i = 0; i < argv.length; i += 2) {
    const key = names[argv[i]];
    if (!key) throw new Error(`unknown flag ${argv[i]}`);
    args[key] = ["flows", "children", "concurrency"].includes(key) ? Number(argv[i + 1]) : argv[i + 1];
  }
  if (!args.redisUrl) throw new Error("--redis-url is required");
  return args;
}

function tree(args, i) {
  const root = `${args.idPrefix}-${i}-0`;
  const children = [];
  for (let j = 0; j < args.children; j++) {
    children.push({
      name: `c${j}`, queueName: args.childQueue, data: { result: 1 }, opts: { jobId: `${root}.${j}` },
    });
  }
  return { name: "sum", queueName: args.parentQueue, data: { combine: "sum" }, opts: { jobId: root }, children };
}

const args = parseArgs(process.argv.slice(2));
const connection = new IORedis(args.redisUrl, { maxRetriesPerRequest: null });
const producer = new FlowProducer({ connection, prefix: args.prefix });
const trees = Array.from({ length: args.flows }, (_, i) => tree(args, i));
const latencies = new Array(args.flows);
let next = 0;
async function lane() {
  while (next < trees.length) {
    const i = next++;
    const t0 = performance.now();
    await producer.add(trees[i]);
    latencies[i] = performance.now() - t0;
  }
}
const start = performance.now();
await Promise.all(Array.from({ length: Math.min(args.concurrency, args.flows) }, lane));
const wall = (performance.now() - start) / 1000;
await producer.close();
await connection.quit();
console.log(JSON.stringify({ wall_s: wall, latencies_ms: latencies, bullmq: bullmqVersion }));
