"""The relay's own tables in relay.sqlite; append a migration, never edit a landed one."""

MIGRATIONS = [
    # 1: members and their domains (runbook: member_domains.dkim_selector, dkim_{rsa,ed}_privkey)
    """
    CREATE TABLE members (
        did TEXT PRIMARY KEY,
        status TEXT NOT NULL CHECK (status IN ('pending','active','suspended')),
        reason TEXT NOT NULL DEFAULT '',
        hourly_limit INTEGER,
        daily_limit INTEGER,
        contact TEXT NOT NULL DEFAULT '',
        forward_to TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        approved_at REAL,
        suspended_at REAL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX members_status ON members (status);
    CREATE TABLE member_domains (
        domain TEXT PRIMARY KEY,
        did TEXT NOT NULL REFERENCES members (did),
        dkim_selector TEXT NOT NULL,
        dkim_rsa_privkey TEXT NOT NULL,
        dkim_ed_privkey TEXT NOT NULL,
        dkim_rsa_pubkey TEXT NOT NULL,
        dkim_ed_pubkey TEXT NOT NULL,
        api_key_hash TEXT NOT NULL,
        created_at REAL NOT NULL,
        rotated_at REAL NOT NULL
    );
    CREATE INDEX member_domains_did ON member_domains (did);
    """,
    # 2: what we relayed (VERP/Message-ID attribution, rate-limit ledger), suppressions, labels.db
    """
    CREATE TABLE sent_messages (
        queue_id TEXT PRIMARY KEY,
        message_id TEXT NOT NULL,
        did TEXT NOT NULL,
        member_domain TEXT NOT NULL,
        recipients TEXT NOT NULL,
        recipient_count INTEGER NOT NULL,
        size INTEGER NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX sent_messages_did_time ON sent_messages (did, created_at);
    CREATE INDEX sent_messages_message_id ON sent_messages (message_id);
    CREATE TABLE suppressions (
        did TEXT NOT NULL,
        recipient TEXT NOT NULL,
        reason TEXT NOT NULL,
        source TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL,
        PRIMARY KEY (did, recipient)
    );
    CREATE TABLE labels.label_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        src TEXT NOT NULL,
        uri TEXT NOT NULL,
        val TEXT NOT NULL,
        neg INTEGER NOT NULL DEFAULT 0,
        cts TEXT NOT NULL,
        exp TEXT,
        sig BLOB,
        reason TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX labels.label_log_uri ON label_log (uri);
    CREATE TABLE labels.member_labels (
        uri TEXT NOT NULL,
        val TEXT NOT NULL,
        src TEXT NOT NULL,
        since REAL NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (uri, val)
    );
    """,
    # 3: the secret behind VERP bounce addresses
    """
    CREATE TABLE relay_secrets (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    INSERT INTO relay_secrets (name, value) VALUES ('verp', lower(hex(randomblob(32))));
    """,
    # 4: send counters for limits (minute buckets for the hour, hour buckets for the day)
    """
    CREATE TABLE send_counters (
        did TEXT NOT NULL,
        granularity TEXT NOT NULL CHECK (granularity IN ('m', 'h')),
        bucket INTEGER NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (did, granularity, bucket)
    );
    """,
    # 5: the rules' results as the relay consumed them, daily activity, in-process reputation state
    """
    CREATE TABLE relay_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        action_id INTEGER NOT NULL UNIQUE,
        sender_did TEXT NOT NULL,
        action_name TEXT NOT NULL,
        verdicts TEXT NOT NULL,
        label_mutations TEXT NOT NULL,
        raw TEXT NOT NULL,
        created_at REAL NOT NULL,
        received_at REAL NOT NULL
    );
    CREATE INDEX relay_events_did ON relay_events (sender_did, id);
    CREATE INDEX relay_events_action ON relay_events (action_name, id);
    CREATE TABLE member_daily_stats (
        did TEXT NOT NULL,
        day TEXT NOT NULL,
        sent INTEGER NOT NULL DEFAULT 0,
        delivered INTEGER NOT NULL DEFAULT 0,
        deferred INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        bounced INTEGER NOT NULL DEFAULT 0,
        complained INTEGER NOT NULL DEFAULT 0,
        rejected INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (did, day)
    );
    CREATE TABLE reputation_state (
        did TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    """,
    # 6: what arrived on the inbound MX; the admin session secret
    """
    CREATE TABLE inbound_messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        received_at REAL NOT NULL,
        classification TEXT NOT NULL CHECK (classification IN
            ('complaint', 'bounce', 'operator', 'reply', 'auto-reply', 'unknown')),
        member_did TEXT,
        subject TEXT NOT NULL DEFAULT '',
        recipient TEXT NOT NULL DEFAULT '',
        mail_from TEXT NOT NULL DEFAULT '',
        message_id TEXT NOT NULL DEFAULT '',
        details TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX inbound_messages_member ON inbound_messages (member_did, id);
    INSERT INTO relay_secrets (name, value) VALUES ('admin-session', lower(hex(randomblob(32))));
    """,
    # 7: self-service enrollments per client address and hour (the wizard's throttle)
    """
    CREATE TABLE enroll_attempts (
        client TEXT NOT NULL,
        hour INTEGER NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (client, hour)
    );
    """,
    # 8: admin dashboard sessions, by the SHA-256 of their random cookie (logout deletes the row)
    """
    CREATE TABLE admin_sessions (
        id TEXT PRIMARY KEY,
        client TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE INDEX admin_sessions_expiry ON admin_sessions (expires_at);
    """,
    # 9: feedback counted only when proven, once per (sent message, recipient, kind); the Message-ID token's secret
    """
    CREATE TABLE feedback_counted (
        queue_id TEXT NOT NULL,
        recipient TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('bounce', 'complaint')),
        inbound_id INTEGER,
        counted_at REAL NOT NULL,
        PRIMARY KEY (queue_id, recipient, kind)
    );
    ALTER TABLE inbound_messages ADD COLUMN counted INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE inbound_messages ADD COLUMN not_counted_reason TEXT NOT NULL DEFAULT '';
    ALTER TABLE inbound_messages ADD COLUMN proof TEXT NOT NULL DEFAULT '';
    ALTER TABLE inbound_messages ADD COLUMN report_dkim TEXT NOT NULL DEFAULT '';
    INSERT INTO relay_secrets (name, value) VALUES ('message-token', lower(hex(randomblob(32))));
    """,
    # 10: the atproto labeler's signed labels (labels.db), in the order they were signed, never rewritten
    """
    CREATE TABLE labels.signed_labels (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        src TEXT NOT NULL,
        uri TEXT NOT NULL,
        val TEXT NOT NULL,
        neg INTEGER NOT NULL DEFAULT 0,
        cts TEXT NOT NULL,
        exp TEXT,
        sig BLOB NOT NULL
    );
    CREATE INDEX labels.signed_labels_subject ON signed_labels (uri, val, src, seq);
    CREATE TRIGGER labels.signed_labels_no_update BEFORE UPDATE ON signed_labels
    BEGIN SELECT RAISE(ABORT, 'signed labels are never rewritten'); END;
    CREATE TRIGGER labels.signed_labels_no_delete BEFORE DELETE ON signed_labels
    BEGIN SELECT RAISE(ABORT, 'signed labels are never rewritten'); END;
    """,
    # 11: actions the stream apps could not read, kept whole for the operator (`atmos-relay events rejected`)
    """
    CREATE TABLE rejected_actions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        origin TEXT NOT NULL UNIQUE,
        action_id INTEGER,
        action_name TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL,
        raw TEXT NOT NULL,
        rejected_by TEXT NOT NULL DEFAULT '',
        rejected_at REAL NOT NULL,
        received_at REAL NOT NULL
    );
    """,
    # 12: a domain carries mail only once its claimant has proven control (issue 12): several members may claim a
    #     domain, at most one holds it verified; each claim keeps when it was last checked and why it failed
    """
    CREATE TABLE member_domains_proven (
        domain TEXT NOT NULL,
        did TEXT NOT NULL REFERENCES members (did),
        dkim_selector TEXT NOT NULL,
        dkim_rsa_privkey TEXT NOT NULL,
        dkim_ed_privkey TEXT NOT NULL,
        dkim_rsa_pubkey TEXT NOT NULL,
        dkim_ed_pubkey TEXT NOT NULL,
        api_key_hash TEXT NOT NULL,
        created_at REAL NOT NULL,
        rotated_at REAL NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'verified', 'unverified')),
        verified_at REAL,
        last_checked_at REAL,
        last_failure TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (domain, did)
    );
    INSERT INTO member_domains_proven (domain, did, dkim_selector, dkim_rsa_privkey, dkim_ed_privkey,
        dkim_rsa_pubkey, dkim_ed_pubkey, api_key_hash, created_at, rotated_at, last_failure)
        SELECT domain, did, dkim_selector, dkim_rsa_privkey, dkim_ed_privkey, dkim_rsa_pubkey, dkim_ed_pubkey,
               api_key_hash, created_at, rotated_at, 'not checked since the upgrade' FROM member_domains;
    DROP TABLE member_domains;
    ALTER TABLE member_domains_proven RENAME TO member_domains;
    CREATE INDEX member_domains_did ON member_domains (did);
    CREATE UNIQUE INDEX member_domains_holder ON member_domains (domain) WHERE status = 'verified';
    """,
    # 13: held and frozen mail (issue 14): when a member was last told it is at a cap (member_at_cap is sent
    #     once per crossing, not per message), and whose mail each spool row is, for rows spooled before
    """
    CREATE TABLE cap_notices (
        did TEXT PRIMARY KEY,
        cap_window TEXT NOT NULL,
        until REAL NOT NULL,
        noticed_at REAL NOT NULL
    );
    UPDATE spool_recipients SET owner = (SELECT did FROM sent_messages s WHERE s.queue_id = spool_recipients.queue_id)
        WHERE owner IS NULL;
    """,
    # 14: soft bounces kept while they may still add up to a suppression (suppression.softRepeats within
    #     softWindowDays); providers refusing the pool's mail, an operator alert until mail to them is delivered
    """
    CREATE TABLE soft_bounces (
        did TEXT NOT NULL,
        recipient TEXT NOT NULL,
        reason TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT '',
        source TEXT NOT NULL DEFAULT '',
        bounced_at REAL NOT NULL
    );
    CREATE INDEX soft_bounces_recipient ON soft_bounces (did, recipient, bounced_at);
    CREATE TABLE pool_blocks (
        provider TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT '',
        since REAL NOT NULL,
        last_seen_at REAL NOT NULL,
        last_reply TEXT NOT NULL DEFAULT '',
        last_recipient TEXT NOT NULL DEFAULT '',
        last_member TEXT NOT NULL DEFAULT '',
        mx TEXT NOT NULL DEFAULT '',
        source TEXT NOT NULL DEFAULT '',
        replies INTEGER NOT NULL DEFAULT 1,
        alerted_at REAL NOT NULL
    );
    """,
]
