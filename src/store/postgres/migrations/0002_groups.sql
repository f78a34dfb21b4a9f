-- Groups of accounts. The group itself is JSON, as every record is; `version` is what
-- a compare-and-swap write names. `group_names` holds the folded display names, so its
-- primary key decides between parallel creations with one name; `group_members`
-- indexes who is in which group (an account's groups are one index range) and is
-- written in the same transaction as the group.
CREATE TABLE groups (
    id text COLLATE "C" PRIMARY KEY,
    created_at bigint NOT NULL,
    version bigint NOT NULL,
    value jsonb NOT NULL
);
CREATE TABLE group_names (
    name text COLLATE "C" PRIMARY KEY,
    group_id text COLLATE "C" NOT NULL
);
CREATE TABLE group_members (
    user_id text COLLATE "C" NOT NULL,
    group_id text COLLATE "C" NOT NULL,
    PRIMARY KEY (user_id, group_id)
);
CREATE INDEX group_members_group ON group_members (group_id);
