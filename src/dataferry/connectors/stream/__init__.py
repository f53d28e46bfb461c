"""What the stream sources (``mqtt``, ``nats``) share: turning the messages one run read
into a ``ChangeSet`` (``collect``): JSON payloads mapped to the declared columns
(``fields:`` paths, the topic), conformed to the declared types, the last message per
primary key kept, and every payload that does not fit kept as a dead letter."""
