"""The bullflow benchmark suite: the real operator on a local control plane and Redis, measured
side by side with BullMQ's own FlowProducer (Python and Node.js). `python -m bench.bullflow_bench
--help`."""
