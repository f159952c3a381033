-- A notify outbox file written by hazardgw before gateway/core/sqlite.py (commit f120ef3): user_version 0,
-- version kept in meta.schema = 1. Dumped with sqlite3.Connection.iterdump(); tests/test_core_support.py
-- opens it with the current code.
BEGIN TRANSACTION;
CREATE TABLE ack_tokens_used (
    nonce TEXT PRIMARY KEY,
    occurrence INTEGER NOT NULL,
    person TEXT NOT NULL,
    used_wall INTEGER NOT NULL,
    expires_wall INTEGER NOT NULL
);
INSERT INTO "ack_tokens_used" VALUES('nonce1',3,'zhao',1700000000000000000,1700001000000000000);
CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY,
    push_id INTEGER NOT NULL,
    wall INTEGER NOT NULL,
    person TEXT NOT NULL,
    occurrence INTEGER,
    step INTEGER,
    attempt INTEGER NOT NULL,
    channel TEXT,
    outcome TEXT NOT NULL,
    error TEXT,
    elapsed REAL
);
INSERT INTO "deliveries" VALUES(1,1,1700000000000000000,'zhao',3,0,1,'json://x','failed','500',0.1);
CREATE TABLE escalations (
    occurrence INTEGER PRIMARY KEY,
    alarm TEXT NOT NULL,
    priority INTEGER NOT NULL,
    hs TEXT,
    round INTEGER NOT NULL,
    started_wall INTEGER NOT NULL,
    next_step INTEGER NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    stopped_wall INTEGER,
    info TEXT NOT NULL
);
INSERT INTO "escalations" VALUES(3,'GT-1/hh',1,'HS-1',0,1700000000000000000,1,'open',NULL,NULL,'{"tag": "GT-1"}');
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO "meta" VALUES('schema','1');
CREATE TABLE pushes (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    person TEXT NOT NULL,
    priority INTEGER NOT NULL,
    occurrence INTEGER,
    round INTEGER,
    step INTEGER,
    alarm TEXT,
    status TEXT NOT NULL,
    title TEXT,
    body TEXT,
    notify_type TEXT,
    info TEXT,
    created_wall INTEGER NOT NULL,
    event_wall INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_wall INTEGER NOT NULL,
    channel TEXT,
    error TEXT,
    done_wall INTEGER,
    summary_id INTEGER
);
INSERT INTO "pushes" VALUES(1,'a:3:0:0:zhao','alarm','zhao',1,3,0,0,'GT-1/hh','pending','t','b','failure','{"x": 1}',1700000000000000000,1700000000000000000,1,1700000001000000000,'json://x','500',NULL,NULL);
CREATE INDEX pushes_status ON pushes (status);
CREATE INDEX pushes_occurrence ON pushes (occurrence);
CREATE INDEX deliveries_occurrence ON deliveries (occurrence);
CREATE INDEX deliveries_wall ON deliveries (wall);
CREATE INDEX escalations_status ON escalations (status);
COMMIT;
