-- Incarnations of a topic's log. Offsets restart at 0 when a topic is created anew (the
-- embedded broker keeps its log in memory, so every `opscenter up` creates fresh topics). Stored
-- source positions, high-water marks and insert deduplication tokens carry the epoch, so
-- offsets of an old log are never mistaken for the new one's (which would skip new messages
-- as "replays" and drop inserts as "duplicates").
CREATE TABLE IF NOT EXISTS topic_epochs
(
    topic    String,
    epoch    String,
    created  DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY (topic, created);
