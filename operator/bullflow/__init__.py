"""bullflow: run BullMQ job flows as Kubernetes resources."""

GROUP = "bullflow.io"
VERSION = "v1alpha1"
__version__ = "0.1.0"
