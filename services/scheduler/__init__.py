"""The scheduler service (``lookout service scheduler``): lookout's memory at work.

Two loops, in every replica (any number of them):

- the **indexer** (:mod:`services.scheduler.indexer`) keeps the indicator history from every
  lookup result and publishes ``notification.lookout.verdict_changed`` when a watched
  indicator's verdict changes; replicas share its durable consumer;
- the **runs** (:mod:`services.scheduler.runs`) re-look up each watch when it is due; one
  replica at a time does it, the one holding the lease on the bus.
"""
