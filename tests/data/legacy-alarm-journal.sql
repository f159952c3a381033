-- An alarm journal file written by hazardgw before gateway/core/sqlite.py (commit f120ef3): user_version 0,
-- version kept in meta.schema = 1. Dumped with sqlite3.Connection.iterdump(); tests/test_core_support.py
-- opens it with the current code.
BEGIN TRANSACTION;
CREATE TABLE alarm_state (
    alarm TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    state TEXT NOT NULL,
    snapshot TEXT NOT NULL
);
INSERT INTO "alarm_state" VALUES('GT-1/hh',7,'UNACK','{"state": "UNACK", "occurrence": 3, "active": true}');
CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    wall_ns INTEGER NOT NULL,
    ts_ns INTEGER NOT NULL,
    event TEXT NOT NULL,
    alarm TEXT NOT NULL,
    tag TEXT NOT NULL,
    condition TEXT NOT NULL,
    hs TEXT,
    priority INTEGER NOT NULL,
    state TEXT NOT NULL,
    prev_state TEXT NOT NULL,
    active INTEGER NOT NULL,
    occurrence INTEGER,
    value REAL,
    limit_value REAL,
    user TEXT,
    comment TEXT,
    chattering INTEGER NOT NULL DEFAULT 0,
    flood INTEGER NOT NULL DEFAULT 0,
    message TEXT,
    data TEXT
);
INSERT INTO "events" VALUES(7,1700000000000000000,1700000000000000000,'raised','GT-1/hh','GT-1','hh','HS-1',1,'UNACK','NORM',1,3,2.5,2.0,NULL,NULL,0,0,NULL,NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO "meta" VALUES('schema','1');
CREATE TABLE occurrences (
    id INTEGER PRIMARY KEY,
    alarm TEXT NOT NULL,
    tag TEXT NOT NULL,
    condition TEXT NOT NULL,
    hs TEXT,
    priority INTEGER NOT NULL,
    raised_ts INTEGER NOT NULL,
    raised_wall INTEGER NOT NULL,
    value REAL,
    limit_value REAL,
    acked_wall INTEGER,
    acked_by TEXT,
    cleared_ts INTEGER,
    realarms INTEGER NOT NULL DEFAULT 0,
    closed_wall INTEGER,
    closed_by TEXT,
    disposed_wall INTEGER,
    disposed_by TEXT,
    cause TEXT,
    action TEXT,
    handler TEXT,
    result TEXT
);
INSERT INTO "occurrences" VALUES(3,'GT-1/hh','GT-1','hh','HS-1',1,1700000000000000000,1700000000000000000,2.5,2.0,NULL,NULL,NULL,0,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL);
CREATE INDEX events_wall ON events (wall_ns);
CREATE INDEX events_alarm ON events (alarm, seq);
CREATE INDEX events_occurrence ON events (occurrence);
CREATE INDEX occurrences_closed ON occurrences (closed_wall);
COMMIT;
