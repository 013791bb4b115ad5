CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL, 
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);

CREATE TABLE repositories (
	id VARCHAR(36) NOT NULL, 
	local_url TEXT NOT NULL, 
	remote_url TEXT NOT NULL, 
	created_ns BIGINT NOT NULL, name TEXT DEFAULT '' NOT NULL, description TEXT DEFAULT '' NOT NULL, mode VARCHAR(16) DEFAULT 'two-way' NOT NULL, policy VARCHAR(16) DEFAULT 'keep-both' NOT NULL, excludes TEXT DEFAULT '[]' NOT NULL, credentials TEXT, is_default BOOLEAN DEFAULT '0' NOT NULL, updated_ns BIGINT, remote_options TEXT, checksum BOOLEAN DEFAULT '0' NOT NULL, max_delete_percent FLOAT DEFAULT '50' NOT NULL, trash_days FLOAT DEFAULT '30' NOT NULL, transfers INTEGER, schedule TEXT, schedule_set_ns BIGINT, watch BOOLEAN DEFAULT '0' NOT NULL, watch_delay_s FLOAT DEFAULT '2' NOT NULL, paused BOOLEAN DEFAULT '0' NOT NULL, failures INTEGER DEFAULT '0' NOT NULL, last_success_ns BIGINT, last_failure_ns BIGINT, bwlimit_bps BIGINT, 
	PRIMARY KEY (id)
);

CREATE TABLE sessions (
	id VARCHAR(36) NOT NULL, 
	repository_id VARCHAR(36) NOT NULL, 
	push_id VARCHAR(36) NOT NULL, 
	pull_id VARCHAR(36) NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	push_state VARCHAR(16), 
	pull_state VARCHAR(16), 
	created_ns BIGINT NOT NULL, 
	started_ns BIGINT, 
	ended_ns BIGINT, 
	error TEXT, 
	stop_requested BOOLEAN DEFAULT '0' NOT NULL, 
	"trigger" VARCHAR(32) DEFAULT '' NOT NULL, 
	percent INTEGER DEFAULT '0' NOT NULL, 
	push_files_planned BIGINT DEFAULT '0' NOT NULL, 
	push_files_done BIGINT DEFAULT '0' NOT NULL, 
	push_bytes_planned BIGINT DEFAULT '0' NOT NULL, 
	push_bytes_done BIGINT DEFAULT '0' NOT NULL, 
	pull_files_planned BIGINT DEFAULT '0' NOT NULL, 
	pull_files_done BIGINT DEFAULT '0' NOT NULL, 
	pull_bytes_planned BIGINT DEFAULT '0' NOT NULL, 
	pull_bytes_done BIGINT DEFAULT '0' NOT NULL, 
	pushed BIGINT DEFAULT '0' NOT NULL, 
	pulled BIGINT DEFAULT '0' NOT NULL, 
	deleted_local BIGINT DEFAULT '0' NOT NULL, 
	deleted_remote BIGINT DEFAULT '0' NOT NULL, 
	conflicts BIGINT DEFAULT '0' NOT NULL, 
	errors BIGINT DEFAULT '0' NOT NULL, halt TEXT, halt_outcome VARCHAR(16), approves VARCHAR(36), moved_local BIGINT DEFAULT '0' NOT NULL, moved_remote BIGINT DEFAULT '0' NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (push_id), 
	UNIQUE (pull_id)
);

CREATE INDEX ix_sessions_created ON sessions (created_ns, id);

CREATE INDEX ix_sessions_repository_created ON sessions (repository_id, created_ns, id);

CREATE INDEX ix_sessions_state ON sessions (state);

CREATE TABLE log_items (
	id INTEGER NOT NULL, 
	session_id VARCHAR(36) NOT NULL, 
	ts_ns BIGINT NOT NULL, 
	kind VARCHAR(16) NOT NULL, 
	path TEXT NOT NULL, 
	message TEXT, 
	size BIGINT, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_log_items_session ON log_items (session_id, id);

CREATE TABLE users (
	id VARCHAR(36) NOT NULL, 
	name VARCHAR(128) NOT NULL, 
	password_hash TEXT NOT NULL, 
	role VARCHAR(16) NOT NULL, 
	created_ns BIGINT NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (name)
);

CREATE TABLE tokens (
	id VARCHAR(36) NOT NULL, 
	user_id VARCHAR(36) NOT NULL, 
	kind VARCHAR(16) NOT NULL, 
	digest VARCHAR(64) NOT NULL, 
	label TEXT DEFAULT '' NOT NULL, 
	created_ns BIGINT NOT NULL, 
	expires_ns BIGINT, 
	revoked BOOLEAN DEFAULT '0' NOT NULL, sign_in VARCHAR(32), 
	PRIMARY KEY (id), 
	UNIQUE (digest)
);

CREATE TABLE events (
	id BIGINT NOT NULL, 
	ts_ns BIGINT NOT NULL, 
	type VARCHAR(32) NOT NULL, 
	repository_id VARCHAR(36), 
	session_id VARCHAR(36), 
	data TEXT NOT NULL, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_events_session ON events (session_id, id);

CREATE INDEX ix_tokens_sign_in ON tokens (sign_in);

CREATE TABLE schedule_fires (
	repository_id VARCHAR(36) NOT NULL, 
	fire_ns BIGINT NOT NULL, 
	recorded_ns BIGINT NOT NULL, 
	session_id VARCHAR(36), 
	PRIMARY KEY (repository_id, fire_ns)
);

CREATE TABLE plan_items (
	id INTEGER NOT NULL, 
	session_id VARCHAR(36) NOT NULL, 
	action VARCHAR(16) NOT NULL, 
	path TEXT NOT NULL, 
	size BIGINT, 
	mtime_ns BIGINT, 
	inode BIGINT, 
	etag TEXT, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_plan_items_session ON plan_items (session_id, id);

CREATE TABLE conflicts (
	id VARCHAR(36) NOT NULL, 
	repository_id VARCHAR(36) NOT NULL, 
	path TEXT NOT NULL, 
	copy_path TEXT, 
	state VARCHAR(16) NOT NULL, 
	policy VARCHAR(16) NOT NULL, 
	found_session_id VARCHAR(36) NOT NULL, 
	found_ns BIGINT NOT NULL, 
	local_size BIGINT NOT NULL, 
	local_mtime_ns BIGINT NOT NULL, 
	local_hash TEXT, 
	remote_size BIGINT NOT NULL, 
	remote_mtime_ns BIGINT NOT NULL, 
	remote_hash TEXT, 
	path_print TEXT NOT NULL, 
	copy_print TEXT, 
	resolving VARCHAR(16), 
	resolving_session_id VARCHAR(36), 
	kept VARCHAR(16), 
	resolved_by VARCHAR(16), 
	resolved_session_id VARCHAR(36), 
	resolved_ns BIGINT, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_conflicts_repository ON conflicts (repository_id, state);

CREATE INDEX ix_conflicts_resolving ON conflicts (resolving_session_id);

CREATE TABLE service_settings (
	name VARCHAR(64) NOT NULL, 
	value TEXT NOT NULL, 
	PRIMARY KEY (name)
);

CREATE UNIQUE INDEX ux_repositories_name ON repositories (name) WHERE name != '';

CREATE TABLE remote_listings (
	repository_id VARCHAR(36) NOT NULL, 
	digest VARCHAR(64) NOT NULL, 
	recorded_ns BIGINT NOT NULL, 
	PRIMARY KEY (repository_id)
);

CREATE TABLE "base" (
	repository_id VARCHAR(36) NOT NULL,
	path TEXT NOT NULL,
	size BIGINT NOT NULL,
	hash VARCHAR(64),
	executable BOOLEAN NOT NULL,
	local_mtime_ns BIGINT NOT NULL,
	local_inode BIGINT,
	local_etag TEXT,
	remote_mtime_ns BIGINT NOT NULL,
	remote_inode BIGINT,
	remote_etag TEXT,
	path_key VARCHAR(64) NOT NULL,
	CONSTRAINT base_pkey PRIMARY KEY (repository_id, path)
) WITHOUT ROWID;

