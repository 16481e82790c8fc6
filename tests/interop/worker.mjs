// A Node.js BullMQ worker for bullflow's interop tests: the same `scripted` behaviour as
// bullflow_worker.processors:scripted. Usage:
//   node worker.mjs --redis-url URL --prefix P --concurrency N --queue A [--queue B ...]
import { Worker } from "bullmq";
import IORedis from "ioredis";

function parseArgs(argv) {
  const args = { queues: [], prefix: "bull", concurrency: 1, redisUrl: process.env.REDIS_URL };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (flag === "--queue") args.queues.push(value);
    else if (flag === "--prefix") args.prefix = value;
    else if (flag === "--concurrency") args.concurrency = Number(value);
    else if (flag === "--redis-url") args.redisUrl = value;
    else throw new Error(`unknown flag ${flag}`);
  }
  if (!args.queues.length || !args.redisUrl) throw new Error("--queue and --redis-url are required");
  return args;
}

const isNumber = (v) => typeof v === "number" && Number.isFinite(v);

async function scripted(job) {
  const data = job.data && typeof job.data === "object" ? job.data : {};
  if (data.sleepSeconds) await new Promise((r) => setTimeout(r, data.sleepSeconds * 1000));
  if (job.attemptsMade < (data.failTimes || 0)) {
    throw new Error(`attempt ${job.attemptsMade + 1} failed on purpose`);
  }
  if (data.fail) throw new Error(String(data.fail));
  const result = data.result === undefined ? null : data.result;
  if (data.combine === "sum") {
    const children = await job.getChildrenValues();
    return (result || 0) + Object.values(children).filter(isNumber).reduce((a, b) => a + b, 0);
  }
  if (data.combine === "collect") return await job.getChildrenValues();
  return result;
}

const args = parseArgs(process.argv.slice(2));
const workers = args.queues.map(
  (queue) =>
    new Worker(queue, scripted, {
      connection: new IORedis(args.redisUrl, { maxRetriesPerRequest: null }),
      prefix: args.prefix,
      concurrency: args.concurrency,
    }),
);
for (const w of workers) w.on("error", (err) => console.error(`worker error: ${err.message}`));
console.log(`node worker ready queues=${args.queues.join(",")} prefix=${args.prefix}`);

let closing = false;
async function shutdown() {
  if (closing) process.exit(130);
  closing = true;
  await Promise.all(workers.map((w) => w.close()));
  process.exit(0);
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
