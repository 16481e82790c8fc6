// A Node.js BullMQ worker for bullflow's interop tests: the same `scripted` behaviour as
// bullflow_worker.processors:scripted. Usage:
//   node worker.mjs --redis-url URL --prefix P --concurrency N --queue A [--queue B ...]
// URL: redis:// or rediss:// (standalone), or bullflow's topology URLs (docs):
//   redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/<masterName>[/<db>]
//     [?sentinelUsername=U&sentinelPassword=P]   -> ioredis Redis({sentinels, name, ...})
//   redis+cluster://[[user]:password@]host[:port][,host[:port]...]   -> ioredis Cluster
//   (rediss+...: TLS). $REDIS_URL instead of --redis-url keeps a password off the command line.
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

const TOPOLOGY_URL = /^(rediss?)\+(sentinel|cluster):\/\/(?:([^@/?]*)@)?([^/?]+)(\/[^?]*)?(?:\?(.*))?$/;

function hostPort(text, defaultPort) {
  // host, host:port, [v6], [v6]:port
  const m = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d+))?$/.exec(text);
  if (!m) throw new Error(`bad host in Redis URL: ${text}`);
  return { host: m[1] || m[2], port: m[3] ? Number(m[3]) : defaultPort };
}

// The connection options for a topology URL, or null for a standalone URL (ioredis parses it).
function topologyOptions(url) {
  const m = TOPOLOGY_URL.exec(url);
  if (!m) return null;
  const [, scheme, topology, userinfo, hosts, path, query] = m;
  const decode = (v) => (v === undefined || v === "" ? undefined : decodeURIComponent(v));
  const [user, ...rest] = (userinfo ?? "").split(":");
  const auth = { username: decode(user), password: decode(rest.join(":")) };
  const tls = scheme === "rediss" ? {} : undefined;
  const segments = (path ?? "").split("/").filter(Boolean);
  const params = new URLSearchParams(query ?? "");
  if (topology === "cluster") {
    if (segments.length) throw new Error("Redis Cluster has only database 0");
    const nodes = hosts.split(",").map((h) => hostPort(h, 6379));
    return { topology, nodes, redisOptions: { ...auth, tls, maxRetriesPerRequest: null } };
  }
  if (!segments.length) {
    throw new Error("add the master name as the path: redis+sentinel://host:26379/mymaster");
  }
  return {
    topology,
    options: {
      sentinels: hosts.split(",").map((h) => hostPort(h, 26379)),
      name: decodeURIComponent(segments[0]),
      db: segments[1] === undefined ? 0 : Number(segments[1]),
      ...auth,
      sentinelUsername: params.get("sentinelUsername") ?? undefined,
      sentinelPassword: params.get("sentinelPassword") ?? undefined,
      tls,
      enableTLSForSentinelMode: tls !== undefined,
      maxRetriesPerRequest: null,
    },
  };
}

function connect(url) {
  const parsed = topologyOptions(url);
  if (parsed === null) return new IORedis(url, { maxRetriesPerRequest: null });
  if (parsed.topology === "cluster") {
    return new IORedis.Cluster(parsed.nodes, {
      redisOptions: parsed.redisOptions,
      // A master failover leaves its slots without a master for a few seconds (failure
      // detection + election). ioredis's defaults give up after 16 retries 100 ms apart and
      // fail the command, so a job finishing then would be failed by BullMQ: wait it out.
      retryDelayOnFailover: 300,
      retryDelayOnClusterDown: 300,
      maxRedirections: 200,
    });
  }
  return new IORedis(parsed.options);
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
      connection: connect(args.redisUrl),
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
