-- PeerSpark RT database schema: the single source of truth.
--
-- Applied at start-up and by `python -m peerspark_rt migrate`. Every statement is idempotent
-- (IF NOT EXISTS, ADD COLUMN IF NOT EXISTS, CREATE OR REPLACE), so applying it twice is harmless;
-- the migrator holds an advisory lock so several nodes starting together apply it once.
--
-- Differences from the spec's schema, and why:
-- * Timestamps are TIMESTAMPTZ, not TIMESTAMP: users, pods, sessions and calendar events live in
--   many time zones, and a bare TIMESTAMP cannot say which instant it means.
-- * email and username are CITEXT so uniqueness ignores case (Ann@x.org and ann@x.org are one
--   account).
-- * gen_random_uuid() is core PostgreSQL since 13; pgcrypto is not needed, and no statement here
--   requires it. The extensions used are pg_trgm (typo-tolerant search, autocomplete) and citext.
-- * Columns the product needs beyond the spec are marked "-- added:" with the reason.
-- * The spec partitions study_analytics and ai_messages by year. Their primary key is a bare
--   UUID, and PostgreSQL needs the partition key in every unique constraint, so partitioning
--   would change the keys. Left unpartitioned for now: both tables are indexed by (user, date)
--   and conversation, which keeps them fast well into the tens of millions of rows.

CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS citext;

-- ===================================================================== core user management

CREATE TABLE IF NOT EXISTS users (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    email CITEXT UNIQUE NOT NULL CHECK (length(email) <= 255),
    username CITEXT UNIQUE NOT NULL CHECK (length(username) <= 50),
    password_hash VARCHAR(255) NOT NULL,
    first_name VARCHAR(100) NOT NULL,
    last_name VARCHAR(100) NOT NULL,
    avatar_url TEXT,
    bio TEXT,
    date_of_birth DATE,
    education_level VARCHAR(50), -- 'high_school', 'undergraduate', 'graduate', 'professional'
    institution VARCHAR(255),
    major VARCHAR(255),
    graduation_year INTEGER,
    location VARCHAR(255),
    timezone VARCHAR(50) DEFAULT 'UTC',
    language_preference VARCHAR(10) DEFAULT 'en',
    is_verified BOOLEAN DEFAULT FALSE,
    is_premium BOOLEAN DEFAULT FALSE,
    premium_expires_at TIMESTAMPTZ,
    account_status VARCHAR(20) DEFAULT 'active', -- 'active', 'suspended', 'deactivated'
    privacy_settings JSONB DEFAULT '{}',
    notification_settings JSONB DEFAULT '{}',
    onboarding_completed BOOLEAN DEFAULT FALSE,
    last_active_at TIMESTAMPTZ DEFAULT NOW(),
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
-- added: the platform role carried in access tokens ('user', 'moderator', 'admin').
ALTER TABLE users ADD COLUMN IF NOT EXISTS role VARCHAR(20) NOT NULL DEFAULT 'user';

CREATE TABLE IF NOT EXISTS user_sessions (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID REFERENCES users(id) ON DELETE CASCADE,
    session_token VARCHAR(255) UNIQUE NOT NULL, -- random server-side handle, never sent out
    refresh_token VARCHAR(255) UNIQUE,          -- SHA-256 of the current refresh token's id
    device_info JSONB,
    ip_address INET,
    expires_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ DEFAULT NOW()
);
-- added: when the session last refreshed (shown in GET /api/auth/sessions).
ALTER TABLE user_sessions ADD COLUMN IF NOT EXISTS last_used_at TIMESTAMPTZ DEFAULT NOW();
ALTER TABLE user_sessions ADD COLUMN IF NOT EXISTS remember_me BOOLEAN NOT NULL DEFAULT FALSE;
-- added: the refresh token rotated last (its digest) and when, so a second use of it within
-- REFRESH_REUSE_GRACE seconds (two tabs refreshing at once) gets the same new pair instead of
-- being taken for token theft.
ALTER TABLE user_sessions ADD COLUMN IF NOT EXISTS previous_refresh_token VARCHAR(255);
ALTER TABLE user_sessions ADD COLUMN IF NOT EXISTS rotated_at TIMESTAMPTZ;
CREATE INDEX IF NOT EXISTS idx_user_sessions_user ON user_sessions(user_id, created_at DESC);
CREATE INDEX IF NOT EXISTS idx_user_sessions_expires ON user_sessions(expires_at);

CREATE TABLE IF NOT EXISTS user_oauth_accounts (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID REFERENCES users(id) ON DELETE CASCADE,
    provider VARCHAR(50) NOT NULL, -- 'google', 'github', 'discord'
    provider_account_id VARCHAR(255) NOT NULL,
    access_token TEXT,
    refresh_token TEXT,
    expires_at TIMESTAMPTZ,
    token_type VARCHAR(50),
    scope TEXT,
    id_token TEXT,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    UNIQUE(provider, provider_account_id)
);

-- ===================================================================== study pods

CREATE TABLE IF NOT EXISTS pods (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name VARCHAR(255) NOT NULL,
    description TEXT,
    subject VARCHAR(100) NOT NULL,
    category VARCHAR(100), -- 'academic', 'professional', 'hobby'
    difficulty_level VARCHAR(20), -- 'beginner', 'intermediate', 'advanced'
    cover_image_url TEXT,
    is_public BOOLEAN DEFAULT TRUE,
    max_members INTEGER DEFAULT 50,
    current_member_count INTEGER DEFAULT 0,
    creator_id UUID REFERENCES users(id) ON DELETE SET NULL,
    tags TEXT[] DEFAULT '{}',
    rules TEXT,
    meeting_schedule JSONB, -- recurring meeting times
    timezone VARCHAR(50) DEFAULT 'UTC',
    language VARCHAR(10) DEFAULT 'en',
    status VARCHAR(20) DEFAULT 'active', -- 'active', 'archived', 'suspended'
    settings JSONB DEFAULT '{}',
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
-- added: the member count can never pass the limit, whatever the code does.
DO $$ BEGIN
    ALTER TABLE pods ADD CONSTRAINT pods_member_count_within_limit
        CHECK (current_member_count >= 0 AND current_member_count <= max_members);
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
CREATE INDEX IF NOT EXISTS idx_pods_public_created ON pods(is_public, created_at DESC);
CREATE INDEX IF NOT EXISTS idx_pods_name_trgm ON pods USING gin (name gin_trgm_ops);

CREATE TABLE IF NOT EXISTS pod_memberships (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    pod_id UUID REFERENCES pods(id) ON DELETE CASCADE,
    user_id UUID REFERENCES users(id) ON DELETE CASCADE,
    role VARCHAR(20) DEFAULT 'member', -- 'owner', 'admin', 'moderator', 'member'
    status VARCHAR(20) DEFAULT 'active', -- 'active', 'pending', 'banned'
    joined_at TIMESTAMPTZ DEFAULT NOW(),
    last_active_at TIMESTAMPTZ DEFAULT NOW(),
    contribution_score INTEGER DEFAULT 0,
    UNIQUE(pod_id, user_id)
);
CREATE INDEX IF NOT EXISTS idx_pod_memberships_user ON pod_memberships(user_id, status);
CREATE INDEX IF NOT EXISTS idx_pod_memberships_pod ON pod_memberships(pod_id, status);

CREATE TABLE IF NOT EXISTS pod_invitations (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    pod_id UUID REFERENCES pods(id) ON DELETE CASCADE,
    inviter_id UUID REFERENCES users(id) ON DELETE CASCADE,
    invitee_email VARCHAR(255),
    invitee_id UUID REFERENCES users(id) ON DELETE CASCADE,
    invitation_code VARCHAR(50) UNIQUE,
    message TEXT,
    status VARCHAR(20) DEFAULT 'pending', -- 'pending', 'accepted', 'declined', 'expired'
    expires_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS idx_pod_invitations_pod ON pod_invitations(pod_id, status);
CREATE INDEX IF NOT EXISTS idx_pod_invitations_invitee ON pod_invitations(invitee_id, status);
CREATE INDEX IF NOT EXISTS idx_pod_invitations_email ON pod_invitations(lower(invitee_email), status);

-- ===================================================================== social feed

CREATE TABLE IF NOT EXISTS posts (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    author_id UUID REFERENCES users(id) ON DELETE CASCADE,
    pod_id UUID REFERENCES pods(id) ON DELETE CASCADE,
    content TEXT NOT NULL,
    post_type VARCHAR(20) DEFAULT 'general', -- 'general', 'question', 'resource', 'milestone', 'announcement'
    media_urls TEXT[] DEFAULT '{}',
    attachments JSONB DEFAULT '[]',
    tags TEXT[] DEFAULT '{}',
    is_pinned BOOLEAN DEFAULT FALSE,
    is_anonymous BOOLEAN DEFAULT FALSE,
    visibility VARCHAR(20) DEFAULT 'pod', -- 'public', 'pod', 'private'
    status VARCHAR(20) DEFAULT 'published', -- 'draft', 'published', 'archived', 'deleted'
    metadata JSONB DEFAULT '{}',
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS idx_posts_author_created ON posts(author_id, created_at DESC);
CREATE INDEX IF NOT EXISTS idx_posts_pod_created ON posts(pod_id, created_at DESC);
CREATE INDEX IF NOT EXISTS idx_posts_type_created ON posts(post_type, created_at DESC);
CREATE INDEX IF NOT EXISTS idx_posts_search ON posts USING gin(to_tsvector('english', content));

CREATE TABLE IF NOT EXISTS post_interactions (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    post_id UUID REFERENCES posts(id) ON DELETE CASCADE,
    user_id UUID REFERENCES users(id) ON DELETE CASCADE,
    interaction_type VARCHAR(20) NOT NULL, -- 'like', 'bookmark', 'share', 'report'
    created_at TIMESTAMPTZ DEFAULT NOW(),
    UNIQUE(post_id, user_id, interaction_type)
);

CREATE TABLE IF NOT EXISTS comments (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    post_id UUID REFERENCES posts(id) ON DELETE CASCADE,
    author_id UUID REFERENCES users(id) ON DELETE CASCADE,
    parent_comment_id UUID REFERENCES comments(id) ON DELETE CASCADE,
    content TEXT NOT NULL,
    is_anonymous BOOLEAN DEFAULT FALSE,
    status VARCHAR(20) DEFAULT 'published',
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);

CREATE TABLE IF NOT EXISTS comment_interactions (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    comment_id UUID REFERENCES comments(id) ON DELETE CASCADE,
    user_id UUID REFERENCES users(id) ON DELETE CASCADE,
    interaction_type VARCHAR(20) NOT NULL, -- 'like', 'report'
    created_at TIMESTAMPTZ DEFAULT NOW(),
    UNIQUE(comment_id, user_id, interaction_type)
);

-- ===================================================================== resource vault

CREATE TABLE IF NOT EXISTS resources (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id UUID REFERENCES users(id) ON DELETE CASCADE,
    pod_id UUID REFERENCES pods(id) ON DELETE SET NULL,
    title VARCHAR(255) NOT NULL,
    description TEXT,
    resource_type VARCHAR(50) NOT NULL, -- 'note', 'flashcard', 'document', 'video', 'audio', 'link'
    file_url TEXT,
    file_size BIGINT,
    file_type VARCHAR(100),
    thumbnail_url TEXT,
    content TEXT, -- for text-based resources
    metadata JSONB DEFAULT '{}',
    tags TEXT[] DEFAULT '{}',
    subject VARCHAR(100),
    difficulty_level VARCHAR(20),
    is_public BOOLEAN DEFAULT FALSE,
    download_count INTEGER DEFAULT 0,
    view_count INTEGER DEFAULT 0,
    rating_average DECIMAL(3,2) DEFAULT 0,
    rating_count INTEGER DEFAULT 0,
    status VARCHAR(20) DEFAULT 'active',
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS idx_resources_owner_created ON resources(owner_id, created_at DESC);
CREATE INDEX IF NOT EXISTS idx_resources_pod_created ON resources(pod_id, created_at DESC);
CREATE INDEX IF NOT EXISTS idx_resources_search
    ON resources USING gin(to_tsvector('english', title || ' ' || description));

CREATE TABLE IF NOT EXISTS resource_shares (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    resource_id UUID REFERENCES resources(id) ON DELETE CASCADE,
    shared_with_user_id UUID REFERENCES users(id) ON DELETE CASCADE,
    shared_with_pod_id UUID REFERENCES pods(id) ON DELETE CASCADE,
    permission_level VARCHAR(20) DEFAULT 'view', -- 'view', 'edit', 'admin'
    shared_by_id UUID REFERENCES users(id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    CHECK (shared_with_user_id IS NOT NULL OR shared_with_pod_id IS NOT NULL)
);

CREATE TABLE IF NOT EXISTS resource_ratings (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    resource_id UUID REFERENCES resources(id) ON DELETE CASCADE,
    user_id UUID REFERENCES users(id) ON DELETE CASCADE,
    rating INTEGER CHECK (rating >= 1 AND rating <= 5),
    review TEXT,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    UNIQUE(resource_id, user_id)
);

-- ===================================================================== study sessions & calendar

CREATE TABLE IF NOT EXISTS study_sessions (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    title VARCHAR(255) NOT NULL,
    description TEXT,
    session_type VARCHAR(20) NOT NULL, -- 'individual', 'group', 'pod'
    pod_id UUID REFERENCES pods(id) ON DELETE CASCADE,
    organizer_id UUID REFERENCES users(id) ON DELETE CASCADE,
    start_time TIMESTAMPTZ NOT NULL,
    end_time TIMESTAMPTZ NOT NULL,
    timezone VARCHAR(50) DEFAULT 'UTC',
    meeting_url TEXT,
    meeting_id VARCHAR(255),
    meeting_password VARCHAR(255),
    max_participants INTEGER,
    current_participants INTEGER DEFAULT 0,
    status VARCHAR(20) DEFAULT 'scheduled', -- 'scheduled', 'ongoing', 'completed', 'cancelled'
    is_recurring BOOLEAN DEFAULT FALSE,
    recurrence_pattern JSONB,
    tags TEXT[] DEFAULT '{}',
    resources JSONB DEFAULT '[]',
    notes TEXT,
    recording_url TEXT,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
-- added (superseded by session_seqs, which holds the live value; kept so that older data
-- migrates): the last sequence number handed out in this session's live room.
ALTER TABLE study_sessions ADD COLUMN IF NOT EXISTS last_message_seq BIGINT NOT NULL DEFAULT 0;
-- added: when the organizer started and ended the live session.
ALTER TABLE study_sessions ADD COLUMN IF NOT EXISTS started_at TIMESTAMPTZ;
ALTER TABLE study_sessions ADD COLUMN IF NOT EXISTS ended_at TIMESTAMPTZ;
CREATE INDEX IF NOT EXISTS idx_study_sessions_organizer ON study_sessions(organizer_id, start_time);
CREATE INDEX IF NOT EXISTS idx_study_sessions_pod ON study_sessions(pod_id, start_time);
CREATE INDEX IF NOT EXISTS idx_study_sessions_start ON study_sessions(start_time);

CREATE TABLE IF NOT EXISTS session_participants (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    session_id UUID REFERENCES study_sessions(id) ON DELETE CASCADE,
    user_id UUID REFERENCES users(id) ON DELETE CASCADE,
    status VARCHAR(20) DEFAULT 'invited', -- 'invited', 'accepted', 'declined', 'attended', 'missed'
    joined_at TIMESTAMPTZ,
    left_at TIMESTAMPTZ,
    attendance_duration INTEGER, -- in minutes
    role VARCHAR(20) DEFAULT 'participant', -- 'organizer', 'presenter', 'participant'
    created_at TIMESTAMPTZ DEFAULT NOW(),
    UNIQUE(session_id, user_id)
);
-- added: live presence bookkeeping. attendance_seconds accumulates every interval the user was
-- present in the live room (several reconnects add up); present_since is set while present.
ALTER TABLE session_participants ADD COLUMN IF NOT EXISTS attendance_seconds INTEGER NOT NULL DEFAULT 0;
ALTER TABLE session_participants ADD COLUMN IF NOT EXISTS present_since TIMESTAMPTZ;
-- added: the furthest message the participant acknowledged reading (live `ack` frames).
ALTER TABLE session_participants ADD COLUMN IF NOT EXISTS last_read_seq BIGINT NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS idx_session_participants_user ON session_participants(user_id, session_id);

CREATE TABLE IF NOT EXISTS calendar_events (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID REFERENCES users(id) ON DELETE CASCADE,
    title VARCHAR(255) NOT NULL,
    description TEXT,
    event_type VARCHAR(50) DEFAULT 'study', -- 'study', 'exam', 'assignment', 'meeting', 'deadline'
    start_time TIMESTAMPTZ NOT NULL,
    end_time TIMESTAMPTZ,
    timezone VARCHAR(50) DEFAULT 'UTC',
    location TEXT,
    is_all_day BOOLEAN DEFAULT FALSE,
    is_recurring BOOLEAN DEFAULT FALSE,
    recurrence_pattern JSONB,
    reminder_settings JSONB DEFAULT '[]',
    related_pod_id UUID REFERENCES pods(id) ON DELETE SET NULL,
    related_session_id UUID REFERENCES study_sessions(id) ON DELETE SET NULL,
    status VARCHAR(20) DEFAULT 'scheduled',
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS idx_calendar_events_user_start ON calendar_events(user_id, start_time);

-- ===================================================================== AI & analytics

CREATE TABLE IF NOT EXISTS ai_conversations (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID REFERENCES users(id) ON DELETE CASCADE,
    session_id VARCHAR(255),
    conversation_type VARCHAR(50) DEFAULT 'general', -- 'general', 'doubt_solving', 'study_plan', 'explanation'
    context JSONB DEFAULT '{}',
    created_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS idx_ai_conversations_user ON ai_conversations(user_id, created_at DESC);

CREATE TABLE IF NOT EXISTS ai_messages (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    conversation_id UUID REFERENCES ai_conversations(id) ON DELETE CASCADE,
    role VARCHAR(20) NOT NULL, -- 'user', 'assistant', 'system'
    content TEXT NOT NULL,
    message_type VARCHAR(50) DEFAULT 'text', -- 'text', 'code', 'math', 'image'
    metadata JSONB DEFAULT '{}',
    tokens_used INTEGER,
    created_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS idx_ai_messages_conversation ON ai_messages(conversation_id, created_at);

CREATE TABLE IF NOT EXISTS study_analytics (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID REFERENCES users(id) ON DELETE CASCADE,
    date DATE NOT NULL,
    study_time_minutes INTEGER DEFAULT 0,
    sessions_completed INTEGER DEFAULT 0,
    focus_score DECIMAL(5,2), -- 0-100 scale
    subjects_studied TEXT[] DEFAULT '{}',
    pods_active TEXT[] DEFAULT '{}',
    resources_accessed INTEGER DEFAULT 0,
    ai_queries_made INTEGER DEFAULT 0,
    posts_created INTEGER DEFAULT 0,
    comments_made INTEGER DEFAULT 0,
    streak_days INTEGER DEFAULT 0,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    UNIQUE(user_id, date)
);

CREATE TABLE IF NOT EXISTS achievements (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name VARCHAR(255) NOT NULL,
    description TEXT,
    icon VARCHAR(100),
    category VARCHAR(50), -- 'study', 'social', 'milestone', 'special'
    criteria JSONB NOT NULL, -- conditions to unlock
    points INTEGER DEFAULT 0,
    rarity VARCHAR(20) DEFAULT 'common', -- 'common', 'rare', 'epic', 'legendary'
    is_active BOOLEAN DEFAULT TRUE,
    created_at TIMESTAMPTZ DEFAULT NOW()
);

CREATE TABLE IF NOT EXISTS user_achievements (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID REFERENCES users(id) ON DELETE CASCADE,
    achievement_id UUID REFERENCES achievements(id) ON DELETE CASCADE,
    earned_at TIMESTAMPTZ DEFAULT NOW(),
    progress JSONB DEFAULT '{}',
    UNIQUE(user_id, achievement_id)
);

-- ===================================================================== gamification

CREATE TABLE IF NOT EXISTS user_gamification (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID REFERENCES users(id) ON DELETE CASCADE,
    total_points INTEGER DEFAULT 0,
    level INTEGER DEFAULT 1,
    experience_points INTEGER DEFAULT 0,
    study_streak INTEGER DEFAULT 0,
    longest_streak INTEGER DEFAULT 0,
    last_study_date DATE,
    badges_earned INTEGER DEFAULT 0,
    challenges_completed INTEGER DEFAULT 0,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    UNIQUE(user_id)
);

CREATE TABLE IF NOT EXISTS challenges (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    title VARCHAR(255) NOT NULL,
    description TEXT,
    challenge_type VARCHAR(50) NOT NULL, -- 'daily', 'weekly', 'monthly', 'special'
    category VARCHAR(50), -- 'study_time', 'streak', 'social', 'learning'
    criteria JSONB NOT NULL,
    reward_points INTEGER DEFAULT 0,
    reward_badge VARCHAR(255),
    start_date TIMESTAMPTZ,
    end_date TIMESTAMPTZ,
    max_participants INTEGER,
    current_participants INTEGER DEFAULT 0,
    is_global BOOLEAN DEFAULT TRUE,
    pod_id UUID REFERENCES pods(id) ON DELETE CASCADE,
    status VARCHAR(20) DEFAULT 'active',
    created_at TIMESTAMPTZ DEFAULT NOW()
);

CREATE TABLE IF NOT EXISTS challenge_participants (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    challenge_id UUID REFERENCES challenges(id) ON DELETE CASCADE,
    user_id UUID REFERENCES users(id) ON DELETE CASCADE,
    progress JSONB DEFAULT '{}',
    status VARCHAR(20) DEFAULT 'active', -- 'active', 'completed', 'failed', 'withdrawn'
    completion_date TIMESTAMPTZ,
    points_earned INTEGER DEFAULT 0,
    rank INTEGER,
    joined_at TIMESTAMPTZ DEFAULT NOW(),
    UNIQUE(challenge_id, user_id)
);

-- ===================================================================== notifications & messaging

CREATE TABLE IF NOT EXISTS notifications (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    recipient_id UUID REFERENCES users(id) ON DELETE CASCADE,
    sender_id UUID REFERENCES users(id) ON DELETE SET NULL,
    notification_type VARCHAR(50) NOT NULL, -- 'post_like', 'comment', 'pod_invite', 'session_reminder', etc.
    title VARCHAR(255) NOT NULL,
    message TEXT,
    action_url TEXT,
    metadata JSONB DEFAULT '{}',
    is_read BOOLEAN DEFAULT FALSE,
    is_email_sent BOOLEAN DEFAULT FALSE,
    is_push_sent BOOLEAN DEFAULT FALSE,
    priority VARCHAR(20) DEFAULT 'normal', -- 'low', 'normal', 'high', 'urgent'
    created_at TIMESTAMPTZ DEFAULT NOW(),
    read_at TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS idx_notifications_recipient ON notifications(recipient_id, created_at DESC);
CREATE INDEX IF NOT EXISTS idx_notifications_unread ON notifications(recipient_id, is_read, created_at DESC);

CREATE TABLE IF NOT EXISTS session_messages (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    session_id UUID REFERENCES study_sessions(id) ON DELETE CASCADE,
    sender_id UUID REFERENCES users(id) ON DELETE CASCADE,
    message_type VARCHAR(20) DEFAULT 'text', -- 'text', 'file', 'screen_share', 'system'
    content TEXT,
    file_url TEXT,
    metadata JSONB DEFAULT '{}',
    created_at TIMESTAMPTZ DEFAULT NOW()
);
-- added: the room-scoped sequence number (see session_seqs) and the
-- client's own id for the message, so a retried send is stored once.
ALTER TABLE session_messages ADD COLUMN IF NOT EXISTS seq BIGINT;
ALTER TABLE session_messages ADD COLUMN IF NOT EXISTS client_message_id VARCHAR(64);
CREATE UNIQUE INDEX IF NOT EXISTS idx_session_messages_seq ON session_messages(session_id, seq);
CREATE UNIQUE INDEX IF NOT EXISTS idx_session_messages_client_id
    ON session_messages(session_id, sender_id, client_message_id)
    WHERE client_message_id IS NOT NULL;
-- added: a message automated moderation removed after it was delivered (CHAT_AI_MODERATION=after);
-- history then shows it as removed. A reviewer's approval clears it again.
ALTER TABLE session_messages ADD COLUMN IF NOT EXISTS retracted_at TIMESTAMPTZ;

-- added: each session room's message sequence, in a narrow row of its own. The chat store locks
-- only these rows (in id order) to hand out sequence numbers, so a slow transaction on a session
-- (joining, editing, starting) never stalls its chat, and the chat never waits on study_sessions.
-- `open` follows the session's status (messages are refused once it is completed or cancelled);
-- both are kept by triggers, so every way a session is created or changed keeps them true.
CREATE TABLE IF NOT EXISTS session_seqs (
    session_id UUID PRIMARY KEY REFERENCES study_sessions(id) ON DELETE CASCADE,
    last_seq BIGINT NOT NULL DEFAULT 0,
    open BOOLEAN NOT NULL DEFAULT TRUE
);
INSERT INTO session_seqs (session_id, last_seq, open)
    SELECT s.id, s.last_message_seq, s.status NOT IN ('completed', 'cancelled')
    FROM study_sessions s
    WHERE NOT EXISTS (SELECT 1 FROM session_seqs q WHERE q.session_id = s.id);
CREATE OR REPLACE FUNCTION peerspark_session_seq_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO session_seqs (session_id, open)
            VALUES (NEW.id, NEW.status IS NULL OR NEW.status NOT IN ('completed', 'cancelled'))
            ON CONFLICT (session_id) DO NOTHING;
    ELSIF NEW.status IS DISTINCT FROM OLD.status THEN
        UPDATE session_seqs SET open = NEW.status NOT IN ('completed', 'cancelled')
            WHERE session_id = NEW.id;
    END IF;
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER trg_session_seq_row
    AFTER INSERT OR UPDATE OF status ON study_sessions
    FOR EACH ROW EXECUTE FUNCTION peerspark_session_seq_row();

-- ===================================================================== used by the spec's code, not declared there

-- Content reports (spec: handleContentReport, db.contentReport).
CREATE TABLE IF NOT EXISTS content_reports (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    reporter_id UUID REFERENCES users(id) ON DELETE SET NULL,
    content_id UUID NOT NULL,
    content_type VARCHAR(20) NOT NULL CHECK (content_type IN ('post', 'comment', 'resource', 'message')),
    reason VARCHAR(100) NOT NULL,
    description TEXT,
    status VARCHAR(20) NOT NULL DEFAULT 'pending', -- 'pending', 'resolved', 'dismissed'
    reviewed_by UUID REFERENCES users(id) ON DELETE SET NULL,
    reviewed_at TIMESTAMPTZ,
    resolution VARCHAR(20), -- 'restored', 'removed'
    created_at TIMESTAMPTZ DEFAULT NOW()
);
-- added: how much this report counts toward hiding the content, from the reporter's standing
-- when they reported (services/reports.py: reporter_weight).
ALTER TABLE content_reports ADD COLUMN IF NOT EXISTS weight REAL NOT NULL DEFAULT 1;
CREATE INDEX IF NOT EXISTS idx_content_reports_content ON content_reports(content_type, content_id, status);
CREATE INDEX IF NOT EXISTS idx_content_reports_reporter ON content_reports(reporter_id, status);
CREATE UNIQUE INDEX IF NOT EXISTS idx_content_reports_once
    ON content_reports(content_type, content_id, reporter_id) WHERE status = 'pending';

-- Analytics events (spec: AnalyticsService.trackEvent, db.analyticsEvent).
CREATE TABLE IF NOT EXISTS analytics_events (
    id BIGSERIAL PRIMARY KEY,
    user_id UUID REFERENCES users(id) ON DELETE SET NULL,
    event VARCHAR(100) NOT NULL,
    properties JSONB NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
-- (its indexes, and the columns the product added, are in the analytics section)

-- ===================================================================== feed, resources, search, uploads, mobile
--
-- Posts, comments and interactions keep their counters in the row (maintained by the triggers
-- below, so a count always equals the rows it counts, whatever code path wrote them), a trending
-- score, and a weighted search vector. Moderation adds two statuses: 'hidden' (three pending
-- reports: out of every read path but the author's until a moderator decides) and 'removed'.

-- IMMUTABLE wrappers: generated columns may only call immutable functions, and these two are
-- immutable for the arguments used here (text[] has no locale-dependent output; an epoch is
-- the same instant in every time zone).
CREATE OR REPLACE FUNCTION peerspark_array_text(value TEXT[]) RETURNS TEXT
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT coalesce(array_to_string(value, ' '), '') $$;

-- Trending: engagement with exponential time decay, half-life 6 hours. At any instant `now`,
--   log2(1 + likes + 2*comments + 3*shares + bookmarks) - age_hours / 6
-- orders posts exactly like the stored score below (the two differ by now/6h, the same for every
-- row), so the score never has to be recomputed as time passes and can be indexed: doubling a
-- post's engagement is worth six hours of freshness.
CREATE OR REPLACE FUNCTION peerspark_trending_score(
    likes INTEGER, comments INTEGER, shares INTEGER, bookmarks INTEGER, created TIMESTAMPTZ
) RETURNS DOUBLE PRECISION LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ln(1 + greatest(likes, 0) + 2 * greatest(comments, 0) + 3 * greatest(shares, 0)
              + greatest(bookmarks, 0)) / ln(2)
           + extract(epoch FROM created)::double precision / 21600
$$;

ALTER TABLE posts ADD COLUMN IF NOT EXISTS like_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE posts ADD COLUMN IF NOT EXISTS comment_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE posts ADD COLUMN IF NOT EXISTS share_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE posts ADD COLUMN IF NOT EXISTS bookmark_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE posts ADD COLUMN IF NOT EXISTS trending_score DOUBLE PRECISION
    GENERATED ALWAYS AS (
        peerspark_trending_score(like_count, comment_count, share_count, bookmark_count, created_at)
    ) STORED;
ALTER TABLE posts ADD COLUMN IF NOT EXISTS search_vector TSVECTOR
    GENERATED ALWAYS AS (
        setweight(to_tsvector('english'::regconfig, coalesce(content, '')), 'A')
        || setweight(to_tsvector('english'::regconfig, peerspark_array_text(tags)), 'B')
    ) STORED;

-- Feed indexes: each feed is a merge of index-ordered streams (public posts, each of my pods,
-- my own posts), so a page reads about `limit` rows per stream, never the whole table.
CREATE INDEX IF NOT EXISTS idx_posts_feed_public
    ON posts (created_at DESC, id DESC) WHERE status = 'published' AND visibility = 'public';
CREATE INDEX IF NOT EXISTS idx_posts_feed_pod
    ON posts (pod_id, created_at DESC, id DESC) WHERE status = 'published';
CREATE INDEX IF NOT EXISTS idx_posts_feed_pod_pinned
    ON posts (pod_id, is_pinned DESC, created_at DESC, id DESC)
    WHERE status IN ('published', 'hidden');
CREATE INDEX IF NOT EXISTS idx_posts_feed_author
    ON posts (author_id, created_at DESC, id DESC) WHERE status IN ('published', 'hidden');
CREATE INDEX IF NOT EXISTS idx_posts_trending_public
    ON posts (trending_score DESC, id DESC) WHERE status = 'published' AND visibility = 'public';
CREATE INDEX IF NOT EXISTS idx_posts_trending_pod
    ON posts (pod_id, trending_score DESC, id DESC) WHERE status = 'published';
CREATE INDEX IF NOT EXISTS idx_posts_updated ON posts (updated_at);
CREATE INDEX IF NOT EXISTS idx_posts_search_vector ON posts USING gin (search_vector);

-- Bookmarked feed: my bookmarks, newest first.
CREATE INDEX IF NOT EXISTS idx_post_interactions_user
    ON post_interactions (user_id, interaction_type, created_at DESC, id DESC);

CREATE OR REPLACE FUNCTION peerspark_post_interaction_counts() RETURNS trigger
    LANGUAGE plpgsql AS $$
DECLARE
    delta INTEGER := CASE WHEN TG_OP = 'INSERT' THEN 1 ELSE -1 END;
    kind TEXT := CASE WHEN TG_OP = 'INSERT' THEN NEW.interaction_type ELSE OLD.interaction_type END;
    post UUID := CASE WHEN TG_OP = 'INSERT' THEN NEW.post_id ELSE OLD.post_id END;
BEGIN
    UPDATE posts SET
        like_count = like_count + CASE WHEN kind = 'like' THEN delta ELSE 0 END,
        share_count = share_count + CASE WHEN kind = 'share' THEN delta ELSE 0 END,
        bookmark_count = bookmark_count + CASE WHEN kind = 'bookmark' THEN delta ELSE 0 END
    WHERE id = post AND kind IN ('like', 'share', 'bookmark');
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER trg_post_interaction_counts
    AFTER INSERT OR DELETE ON post_interactions
    FOR EACH ROW EXECUTE FUNCTION peerspark_post_interaction_counts();

-- Whose likes of a post its author has been told about: one notification for a user's first
-- like, none for liking again after an unlike.
CREATE TABLE IF NOT EXISTS post_like_notices (
    post_id UUID NOT NULL REFERENCES posts(id) ON DELETE CASCADE,
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (post_id, user_id)
);

-- Comments: a materialized thread path (each level adds "<UTC timestamp><id>") orders a whole
-- comment tree depth-first by one indexed column, so the tree pages with a plain keyset.
ALTER TABLE comments ADD COLUMN IF NOT EXISTS like_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE comments ADD COLUMN IF NOT EXISTS depth SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE comments ADD COLUMN IF NOT EXISTS thread_path TEXT COLLATE "C";
CREATE INDEX IF NOT EXISTS idx_comments_thread ON comments (post_id, thread_path);
CREATE INDEX IF NOT EXISTS idx_comments_parent ON comments (parent_comment_id);

CREATE OR REPLACE FUNCTION peerspark_comment_counts() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    delta INTEGER := 0;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.status = 'published' THEN delta := delta - 1; END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') AND NEW.status = 'published' THEN delta := delta + 1; END IF;
    IF delta <> 0 THEN
        UPDATE posts SET comment_count = comment_count + delta
        WHERE id = CASE WHEN TG_OP = 'DELETE' THEN OLD.post_id ELSE NEW.post_id END;
    END IF;
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER trg_comment_counts
    AFTER INSERT OR DELETE OR UPDATE OF status ON comments
    FOR EACH ROW EXECUTE FUNCTION peerspark_comment_counts();

CREATE OR REPLACE FUNCTION peerspark_comment_like_counts() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' AND NEW.interaction_type = 'like' THEN
        UPDATE comments SET like_count = like_count + 1 WHERE id = NEW.comment_id;
    ELSIF TG_OP = 'DELETE' AND OLD.interaction_type = 'like' THEN
        UPDATE comments SET like_count = like_count - 1 WHERE id = OLD.comment_id;
    END IF;
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER trg_comment_like_counts
    AFTER INSERT OR DELETE ON comment_interactions
    FOR EACH ROW EXECUTE FUNCTION peerspark_comment_like_counts();

-- Uploaded files: where the bytes are, whose they are, and what (if anything) uses them, so
-- deleting that thing deletes the file. The key is generated by the server, never taken from
-- the client.
CREATE TABLE IF NOT EXISTS uploads (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id UUID REFERENCES users(id) ON DELETE CASCADE,
    storage_key VARCHAR(255) UNIQUE NOT NULL,
    backend VARCHAR(10) NOT NULL CHECK (backend IN ('local', 's3')),
    original_name VARCHAR(255),
    content_type VARCHAR(100) NOT NULL,
    size_bytes BIGINT NOT NULL CHECK (size_bytes >= 0),
    attached_to VARCHAR(20), -- 'resource', 'post'
    attached_id UUID,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS idx_uploads_owner ON uploads (owner_id, created_at DESC);
-- Clean-up (the hourly `cleanup` job): uploads never attached within a day, and files of posts
-- deleted (soft, or for good with their pod or author) a while ago, are deleted with their
-- bytes. `released_at` is when the post that used the file went; the posts' triggers set it.
ALTER TABLE uploads ADD COLUMN IF NOT EXISTS released_at TIMESTAMPTZ;
CREATE INDEX IF NOT EXISTS idx_uploads_unattached ON uploads (created_at) WHERE attached_to IS NULL;
CREATE INDEX IF NOT EXISTS idx_uploads_released ON uploads (released_at) WHERE released_at IS NOT NULL;

CREATE OR REPLACE FUNCTION peerspark_release_post_uploads() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    files JSONB := CASE WHEN TG_OP = 'DELETE' THEN OLD.attachments ELSE NEW.attachments END;
BEGIN
    IF jsonb_typeof(files) = 'array' AND jsonb_array_length(files) > 0 THEN
        UPDATE uploads SET released_at = NOW()
        WHERE id IN (SELECT (f ->> 'uploadId')::uuid FROM jsonb_array_elements(files) f)
          AND released_at IS NULL;
    END IF;
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER trg_post_uploads_deleted
    AFTER DELETE ON posts
    FOR EACH ROW EXECUTE FUNCTION peerspark_release_post_uploads();
CREATE OR REPLACE TRIGGER trg_post_uploads_soft_deleted
    AFTER UPDATE OF status ON posts
    FOR EACH ROW WHEN (NEW.status = 'deleted' AND OLD.status IS DISTINCT FROM 'deleted')
    EXECUTE FUNCTION peerspark_release_post_uploads();

-- Resources: the uploaded file, the weighted search vector (title > description, subject and
-- tags > content), trigram title index (typo tolerance, autocomplete), and exact rating
-- aggregates kept by a trigger.
ALTER TABLE resources ADD COLUMN IF NOT EXISTS upload_id UUID REFERENCES uploads(id) ON DELETE SET NULL;
ALTER TABLE resources ADD COLUMN IF NOT EXISTS search_vector TSVECTOR
    GENERATED ALWAYS AS (
        setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'A')
        || setweight(to_tsvector('english'::regconfig, coalesce(description, '')), 'B')
        || setweight(to_tsvector('english'::regconfig, coalesce(subject, '')), 'B')
        || setweight(to_tsvector('english'::regconfig, peerspark_array_text(tags)), 'B')
        || setweight(to_tsvector('english'::regconfig, coalesce(content, '')), 'C')
    ) STORED;
CREATE UNIQUE INDEX IF NOT EXISTS idx_resources_upload ON resources (upload_id) WHERE upload_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_resources_search_vector ON resources USING gin (search_vector);
CREATE INDEX IF NOT EXISTS idx_resources_title_trgm ON resources USING gin (title gin_trgm_ops);
CREATE INDEX IF NOT EXISTS idx_resources_public_created
    ON resources (created_at DESC, id DESC) WHERE is_public AND status = 'active';
CREATE INDEX IF NOT EXISTS idx_resources_updated ON resources (updated_at);

-- A share names exactly one grantee, once.
DO $$ BEGIN
    ALTER TABLE resource_shares ADD CONSTRAINT resource_shares_one_grantee
        CHECK (num_nonnulls(shared_with_user_id, shared_with_pod_id) = 1);
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
CREATE UNIQUE INDEX IF NOT EXISTS idx_resource_shares_user
    ON resource_shares (shared_with_user_id, resource_id) WHERE shared_with_user_id IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS idx_resource_shares_pod
    ON resource_shares (shared_with_pod_id, resource_id) WHERE shared_with_pod_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_resource_shares_resource ON resource_shares (resource_id);

CREATE OR REPLACE FUNCTION peerspark_resource_rating() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    target UUID := CASE WHEN TG_OP = 'DELETE' THEN OLD.resource_id ELSE NEW.resource_id END;
BEGIN
    -- Lock the resource first, so a concurrent rating has committed before the aggregate
    -- below runs (with a fresh snapshot) and the last writer stores the true average.
    -- NO KEY UPDATE does not wait on concurrent raters' foreign-key share locks: no deadlock.
    PERFORM 1 FROM resources WHERE id = target FOR NO KEY UPDATE;
    UPDATE resources r SET
        rating_count = agg.n,
        rating_average = coalesce(round(agg.avg, 2), 0)
    FROM (SELECT count(*) AS n, avg(rating)::numeric AS avg
          FROM resource_ratings WHERE resource_id = target) agg
    WHERE r.id = target;
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER trg_resource_rating
    AFTER INSERT OR DELETE OR UPDATE OF rating ON resource_ratings
    FOR EACH ROW EXECUTE FUNCTION peerspark_resource_rating();

CREATE TABLE IF NOT EXISTS resource_bookmarks (
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    resource_id UUID NOT NULL REFERENCES resources(id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (user_id, resource_id)
);

-- Reports: the pod the reported content belongs to (filled in when the report is made), so pod
-- moderators' queues are an index range; platform moderators read the whole queue.
ALTER TABLE content_reports ADD COLUMN IF NOT EXISTS pod_id UUID REFERENCES pods(id) ON DELETE CASCADE;
CREATE INDEX IF NOT EXISTS idx_content_reports_queue ON content_reports (status, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS idx_content_reports_pod_queue
    ON content_reports (pod_id, status, created_at DESC, id DESC);

-- Mobile sync: each pending action's client id, applied once per user; a retried sync gets
-- the stored result instead of applying the action again.
CREATE TABLE IF NOT EXISTS sync_actions (
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    client_action_id VARCHAR(100) NOT NULL,
    action_type VARCHAR(50) NOT NULL,
    ok BOOLEAN NOT NULL,
    result JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (user_id, client_action_id)
);
CREATE INDEX IF NOT EXISTS idx_sync_actions_age ON sync_actions (user_id, created_at);
-- (end of section: feed)

-- ===================================================================== calendar, reminders, notifications, jobs
-- Calendar events. added: span_start/span_end are the instants a whole series covers (its
-- moved occurrences included; span_end NULL: repeats forever), kept by the calendar service on
-- every write so the range query and the reminder scan filter with an index instead of
-- expanding every series. ical_uid: the UID of an imported event, so importing the same .ics
-- again updates instead of duplicating (exported events use the row id).
ALTER TABLE calendar_events ADD COLUMN IF NOT EXISTS span_start TIMESTAMPTZ;
ALTER TABLE calendar_events ADD COLUMN IF NOT EXISTS span_end TIMESTAMPTZ;
ALTER TABLE calendar_events ADD COLUMN IF NOT EXISTS ical_uid VARCHAR(255);
CREATE INDEX IF NOT EXISTS idx_calendar_events_user_span ON calendar_events(user_id, span_start);
CREATE UNIQUE INDEX IF NOT EXISTS idx_calendar_events_user_uid
    ON calendar_events(user_id, ical_uid) WHERE ical_uid IS NOT NULL;
-- reminder_due_at: when the event's next reminder comes due (NULL: none will), kept by the
-- calendar service on every write and moved on by the reminder scan, which reads only events
-- whose time has come (through idx_calendar_events_reminder_due). Rows from before the column
-- (or written without it) start in 1970: the first scan works out theirs.
ALTER TABLE calendar_events ADD COLUMN IF NOT EXISTS reminder_due_at TIMESTAMPTZ
    DEFAULT '1970-01-01 00:00:00+00';
CREATE INDEX IF NOT EXISTS idx_calendar_events_reminder_due
    ON calendar_events(reminder_due_at, id) WHERE reminder_due_at IS NOT NULL;
DROP INDEX IF EXISTS idx_calendar_events_reminders; -- the scan used to read events by span
-- The reminder scan pages recurring study sessions by id.
CREATE INDEX IF NOT EXISTS idx_study_sessions_recurring ON study_sessions(id) WHERE is_recurring;
-- span_end: when a study session's last occurrence ends (NULL: a series that repeats forever,
-- or a row written before the column), kept by the sessions service on every write, so the
-- iCalendar feed leaves out series long over as it does events.
ALTER TABLE study_sessions ADD COLUMN IF NOT EXISTS span_end TIMESTAMPTZ;

-- The private iCalendar feed: one revocable token per user. Only its SHA-256 is kept.
CREATE TABLE IF NOT EXISTS calendar_feed_tokens (
    user_id UUID PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    token_hash CHAR(64) UNIQUE NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    last_used_at TIMESTAMPTZ
);

-- One row per reminder fired: the unique key makes each (occurrence, offset, channel) fire once,
-- however many nodes scan and however often a job is retried.
CREATE TABLE IF NOT EXISTS reminder_deliveries (
    id BIGSERIAL PRIMARY KEY,
    source VARCHAR(10) NOT NULL CHECK (source IN ('event', 'session')),
    source_id UUID NOT NULL,
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    occurrence_start TIMESTAMPTZ NOT NULL,
    minutes_before INTEGER NOT NULL,
    channel VARCHAR(10) NOT NULL CHECK (channel IN ('in_app', 'email')),
    due_at TIMESTAMPTZ NOT NULL,
    fired_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    late BOOLEAN NOT NULL DEFAULT FALSE,
    notification_id UUID REFERENCES notifications(id) ON DELETE SET NULL,
    fired_by VARCHAR(64),
    UNIQUE (source, source_id, user_id, occurrence_start, minutes_before, channel)
);
CREATE INDEX IF NOT EXISTS idx_reminder_deliveries_fired ON reminder_deliveries(fired_at);

-- How far each periodic scan has got ('session_reminders', 'digest'), so the next one looks
-- only at what came since (and, after downtime, at what was missed).
CREATE TABLE IF NOT EXISTS scan_watermarks (
    name VARCHAR(50) PRIMARY KEY,
    scanned_until TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
-- The daily digest reads the active users of the time zones where it is 08:00, by id.
CREATE INDEX IF NOT EXISTS idx_users_digest_zone
    ON users ((COALESCE(timezone, 'UTC')), id) WHERE account_status = 'active';

-- The durable job queue. Workers claim ready rows with SELECT ... FOR UPDATE SKIP LOCKED and
-- hold a lease (locked_until); a lease that runs out (the node died) puts the job back.
-- dedupe_key makes an enqueue idempotent: periodic jobs use '<kind>@<period start>', so one
-- node's insert wins and the job runs once per period across the cluster.
CREATE TABLE IF NOT EXISTS jobs (
    id BIGSERIAL PRIMARY KEY,
    kind VARCHAR(50) NOT NULL,
    payload JSONB NOT NULL DEFAULT '{}',
    status VARCHAR(10) NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'done', 'dead')),
    run_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 5 CHECK (max_attempts >= 1),
    last_error TEXT,
    locked_by VARCHAR(64),
    locked_until TIMESTAMPTZ,
    dedupe_key VARCHAR(255) UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    finished_at TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS idx_jobs_ready ON jobs(run_at, id) WHERE status = 'queued';
CREATE INDEX IF NOT EXISTS idx_jobs_lease ON jobs(locked_until) WHERE status = 'running';
CREATE INDEX IF NOT EXISTS idx_jobs_finished ON jobs(finished_at) WHERE status IN ('done', 'dead');
CREATE INDEX IF NOT EXISTS idx_jobs_dead ON jobs(kind, updated_at DESC) WHERE status = 'dead';
-- (end of section: calendar)

-- ===================================================================== AI assistant and moderation
-- What each user spent on the assistant per day (UTC), kept apart from ai_messages so deleting a
-- conversation does not give tokens back. `tokens` includes estimates reserved by calls still
-- running; a finished call replaces its estimate with what the upstream reported.
CREATE TABLE IF NOT EXISTS ai_usage_daily (
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    day DATE NOT NULL,
    tokens BIGINT NOT NULL DEFAULT 0,
    queries INTEGER NOT NULL DEFAULT 0,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (user_id, day)
);

-- Grounded answers search resources.search_vector and check shares through the indexes of
-- the feed section (idx_resources_search_vector, idx_resource_shares_user/_pod).

-- Content that moderation held back: what would have been stored (snapshot), why, and what a
-- reviewer decided. Approved content is handed back to its area, which stores it then.
CREATE TABLE IF NOT EXISTS moderation_queue (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    content_type VARCHAR(20) NOT NULL CHECK (content_type IN ('post', 'comment', 'message')),
    author_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    pod_id UUID REFERENCES pods(id) ON DELETE CASCADE,
    session_id UUID REFERENCES study_sessions(id) ON DELETE CASCADE,
    content TEXT NOT NULL,
    snapshot JSONB NOT NULL DEFAULT '{}',
    reason TEXT NOT NULL,
    rule VARCHAR(40) NOT NULL, -- 'blocked_words', 'link_spam', 'repeated_content', 'post_rate', 'openai'
    categories TEXT[] NOT NULL DEFAULT '{}',
    status VARCHAR(20) NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'rejected')),
    reviewer_id UUID REFERENCES users(id) ON DELETE SET NULL,
    review_note TEXT,
    reviewed_at TIMESTAMPTZ,
    published_id UUID, -- the post, comment or message stored on approval
    dedupe_key VARCHAR(200), -- e.g. a chat message's client id: a retried send is held once
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS idx_moderation_queue_status ON moderation_queue(status, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS idx_moderation_queue_pod ON moderation_queue(pod_id, status, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS idx_moderation_queue_session ON moderation_queue(session_id, status, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS idx_moderation_queue_author ON moderation_queue(author_id, created_at DESC);
CREATE UNIQUE INDEX IF NOT EXISTS idx_moderation_queue_dedupe
    ON moderation_queue(author_id, content_type, dedupe_key) WHERE dedupe_key IS NOT NULL;
-- (end of section: ai)

-- ===================================================================== accounts: lifecycle, providers, push, admin
-- Single-use links sent by email (verify an address, reset a password, confirm a new address)
-- and the one-time tickets that finish a sign-in with a provider. Only the SHA-256 of a token
-- is kept: a copy of this table signs nobody in. `email` is the address the link was sent to
-- (for a change of address: the new one, which becomes the account's once confirmed).
CREATE TABLE IF NOT EXISTS account_tokens (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    purpose VARCHAR(20) NOT NULL
        CHECK (purpose IN ('verify_email', 'change_email', 'reset_password', 'oauth_ticket')),
    token_hash CHAR(64) UNIQUE NOT NULL,
    email CITEXT,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS idx_account_tokens_user ON account_tokens(user_id, purpose);
CREATE INDEX IF NOT EXISTS idx_account_tokens_expires ON account_tokens(expires_at);

-- A sign-in with a provider under way: the state sent to the provider (its SHA-256), the PKCE
-- verifier and OpenID nonce to check the answer with, and the signed-in user who asked to link
-- the provider (NULL: a sign-in). Used once, within OAUTH_STATE_TTL.
CREATE TABLE IF NOT EXISTS oauth_states (
    state_hash CHAR(64) PRIMARY KEY,
    provider VARCHAR(50) NOT NULL,
    code_verifier VARCHAR(128) NOT NULL,
    nonce VARCHAR(128) NOT NULL,
    link_user_id UUID REFERENCES users(id) ON DELETE CASCADE,
    expires_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS idx_oauth_states_expires ON oauth_states(expires_at);
-- added: the provider's address for the account and whether the provider vouched for it.
ALTER TABLE user_oauth_accounts ADD COLUMN IF NOT EXISTS email CITEXT;
ALTER TABLE user_oauth_accounts ADD COLUMN IF NOT EXISTS email_verified BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX IF NOT EXISTS idx_user_oauth_accounts_user ON user_oauth_accounts(user_id);

-- Web Push subscriptions (one per browser/device): where to send and the keys to encrypt with.
CREATE TABLE IF NOT EXISTS push_subscriptions (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    endpoint TEXT UNIQUE NOT NULL CHECK (length(endpoint) <= 2048),
    p256dh VARCHAR(128) NOT NULL,
    auth VARCHAR(64) NOT NULL,
    user_agent VARCHAR(512),
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    last_sent_at TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS idx_push_subscriptions_user ON push_subscriptions(user_id);

-- Data exports (GET /api/users/me/export): built by the `export_user_data` job, downloaded once
-- by a link whose token only this row's hash knows; the archive is dropped once downloaded.
CREATE TABLE IF NOT EXISTS data_exports (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    status VARCHAR(20) NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'ready', 'downloaded', 'failed')),
    token_hash CHAR(64) UNIQUE,
    archive BYTEA,
    size_bytes BIGINT,
    expires_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    ready_at TIMESTAMPTZ,
    downloaded_at TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS idx_data_exports_user ON data_exports(user_id, created_at DESC);

-- What platform admins did (and the scheduled jobs acting for the platform: actor NULL). Kept
-- when either account is deleted, with the ids it had.
CREATE TABLE IF NOT EXISTS admin_audit_log (
    id BIGSERIAL PRIMARY KEY,
    actor_id UUID REFERENCES users(id) ON DELETE SET NULL,
    action VARCHAR(50) NOT NULL,
    target_user_id UUID REFERENCES users(id) ON DELETE SET NULL,
    details JSONB NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
ALTER TABLE admin_audit_log ADD COLUMN IF NOT EXISTS actor_label VARCHAR(255);
ALTER TABLE admin_audit_log ADD COLUMN IF NOT EXISTS target_label VARCHAR(255);
CREATE INDEX IF NOT EXISTS idx_admin_audit_log_created ON admin_audit_log(created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS idx_admin_audit_log_target ON admin_audit_log(target_user_id, id DESC);
-- Premium expiry: the scheduled job reads only premium rows that have an end.
CREATE INDEX IF NOT EXISTS idx_users_premium_expiry
    ON users(premium_expires_at) WHERE is_premium AND premium_expires_at IS NOT NULL;
-- Admin search over users: typo-tolerant on username and email.
CREATE INDEX IF NOT EXISTS idx_users_username_trgm ON users USING gin ((username::text) gin_trgm_ops);
CREATE INDEX IF NOT EXISTS idx_users_email_trgm ON users USING gin ((email::text) gin_trgm_ops);
-- Chat messages and comments of a deleted account stay, without their author: the columns
-- become nullable-on-delete (they were CASCADE), so the rooms' sequences and threads keep no gaps.
DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_constraint
               WHERE conname = 'session_messages_sender_id_fkey' AND confdeltype <> 'n') THEN
        ALTER TABLE session_messages DROP CONSTRAINT session_messages_sender_id_fkey;
        ALTER TABLE session_messages ADD CONSTRAINT session_messages_sender_id_fkey
            FOREIGN KEY (sender_id) REFERENCES users(id) ON DELETE SET NULL;
    END IF;
END $$;
-- (end of section: accounts)

-- ===================================================================== analytics
-- The event log is the single source of the study analytics (peerspark_rt/analytics/events.py
-- lists the kinds). An act writes its event in its own transaction; `dedupe_key` makes a retried
-- act (a resent chat cid, a replayed mobile sync action) write it once. Each event keeps the
-- user's local date and hour as they were when it happened (their zone then), so moving to
-- another zone later does not rewrite past days.
-- The zone names this server knows, so an event's local time takes a user's zone only when
-- PostgreSQL can use it (UTC otherwise: a zone Python accepted but this server's tz database
-- lacks must not fail the act that records the event). Refreshed with every schema apply.
CREATE TABLE IF NOT EXISTS peerspark_zones (name TEXT PRIMARY KEY);
INSERT INTO peerspark_zones SELECT name FROM pg_timezone_names ON CONFLICT DO NOTHING;

DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                    WHERE table_name = 'analytics_events' AND column_name = 'occurred_at') THEN
        ALTER TABLE analytics_events ADD COLUMN occurred_at TIMESTAMPTZ;
        ALTER TABLE analytics_events ADD COLUMN local_date DATE;
        ALTER TABLE analytics_events ADD COLUMN local_hour SMALLINT;
        UPDATE analytics_events e
           SET occurred_at = e.created_at,
               local_date = (e.created_at AT TIME ZONE z.zone)::date,
               local_hour = extract(hour FROM e.created_at AT TIME ZONE z.zone)
          FROM (SELECT e2.id, COALESCE(pz.name, 'UTC') AS zone
                  FROM analytics_events e2
                  LEFT JOIN users u ON u.id = e2.user_id
                  LEFT JOIN peerspark_zones pz ON pz.name = u.timezone) z
         WHERE z.id = e.id;
        ALTER TABLE analytics_events ALTER COLUMN occurred_at SET NOT NULL;
        ALTER TABLE analytics_events ALTER COLUMN occurred_at SET DEFAULT NOW();
        ALTER TABLE analytics_events ALTER COLUMN local_date SET NOT NULL;
        ALTER TABLE analytics_events ALTER COLUMN local_hour SET NOT NULL;
    END IF;
END $$;
ALTER TABLE analytics_events ADD COLUMN IF NOT EXISTS pod_id UUID;
ALTER TABLE analytics_events ADD COLUMN IF NOT EXISTS session_id UUID;
ALTER TABLE analytics_events ADD COLUMN IF NOT EXISTS value DOUBLE PRECISION;
ALTER TABLE analytics_events ADD COLUMN IF NOT EXISTS dedupe_key VARCHAR(200);
CREATE UNIQUE INDEX IF NOT EXISTS idx_analytics_events_dedupe
    ON analytics_events(user_id, event, dedupe_key) WHERE dedupe_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_analytics_events_user_day ON analytics_events(user_id, local_date);
CREATE INDEX IF NOT EXISTS idx_analytics_events_user_kind
    ON analytics_events(user_id, event, occurred_at);
-- (replaced by the two above: nothing reads events by creation time)
DROP INDEX IF EXISTS idx_analytics_events_user;
DROP INDEX IF EXISTS idx_analytics_events_event;
CREATE INDEX IF NOT EXISTS idx_analytics_events_pod ON analytics_events(pod_id, occurred_at)
    WHERE pod_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_analytics_events_at ON analytics_events(occurred_at);

-- Time spent (session attendance, focus blocks), cut at the user's local hours: what the daily
-- rollup sums for study time, subjects and productive hours. Written with its event.
CREATE TABLE IF NOT EXISTS analytics_spans (
    event_id BIGINT NOT NULL REFERENCES analytics_events(id) ON DELETE CASCADE,
    user_id UUID REFERENCES users(id) ON DELETE CASCADE,
    local_date DATE NOT NULL,
    local_hour SMALLINT NOT NULL CHECK (local_hour BETWEEN 0 AND 23),
    seconds INTEGER NOT NULL CHECK (seconds > 0),
    subject VARCHAR(100),
    PRIMARY KEY (event_id, local_date, local_hour)
);
CREATE INDEX IF NOT EXISTS idx_analytics_spans_user_day ON analytics_spans(user_id, local_date);

-- The (user, local day) pairs whose rollup is out of date: appended with each event (no unique
-- key, so concurrent acts never wait on each other), taken by the rollup job.
CREATE TABLE IF NOT EXISTS analytics_dirty (
    id BIGSERIAL PRIMARY KEY,
    user_id UUID NOT NULL,
    day DATE NOT NULL
);

-- added to study_analytics: exact figures behind the spec's columns (seconds, not rounded
-- minutes), the blocks behind focus_score, productive hours and subject time for the dashboards.
ALTER TABLE study_analytics ADD COLUMN IF NOT EXISTS study_seconds INTEGER NOT NULL DEFAULT 0;
ALTER TABLE study_analytics ADD COLUMN IF NOT EXISTS focus_blocks_completed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE study_analytics ADD COLUMN IF NOT EXISTS focus_blocks_abandoned INTEGER NOT NULL DEFAULT 0;
ALTER TABLE study_analytics ADD COLUMN IF NOT EXISTS hourly_seconds INTEGER[] NOT NULL
    DEFAULT array_fill(0, ARRAY[24]);
ALTER TABLE study_analytics ADD COLUMN IF NOT EXISTS subject_seconds JSONB NOT NULL DEFAULT '{}';
ALTER TABLE study_analytics ADD COLUMN IF NOT EXISTS likes_received INTEGER NOT NULL DEFAULT 0;
ALTER TABLE study_analytics ADD COLUMN IF NOT EXISTS comments_received INTEGER NOT NULL DEFAULT 0;
ALTER TABLE study_analytics ADD COLUMN IF NOT EXISTS messages_sent INTEGER NOT NULL DEFAULT 0;
ALTER TABLE study_analytics ADD COLUMN IF NOT EXISTS events INTEGER NOT NULL DEFAULT 0;
ALTER TABLE study_analytics ADD COLUMN IF NOT EXISTS updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW();
CREATE INDEX IF NOT EXISTS idx_study_analytics_date ON study_analytics(date);
-- added to posts: the answer the author of a question accepted (POST /api/posts/{id}/accepted-answer).
ALTER TABLE posts ADD COLUMN IF NOT EXISTS accepted_comment_id UUID REFERENCES comments(id) ON DELETE SET NULL;

-- Points each member earned in a pod on one of their local days (recomputed with that day's
-- rollup from the events; the table of points is peerspark_rt/analytics/rollup.py's
-- CONTRIBUTION_POINTS). pod_memberships.contribution_score is the sum over their days.
CREATE TABLE IF NOT EXISTS pod_contributions (
    pod_id UUID NOT NULL REFERENCES pods(id) ON DELETE CASCADE,
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    date DATE NOT NULL,
    points INTEGER NOT NULL,
    PRIMARY KEY (user_id, date, pod_id)
);
CREATE INDEX IF NOT EXISTS idx_pod_contributions_member ON pod_contributions(pod_id, user_id);

-- Focus timers of live rooms (session:<id>, user:<id>): the state after the last command, from
-- which every node computes the phases (peerspark_rt/actors/focus.py). The row lock orders
-- commands; `version` grows by one with each.
CREATE TABLE IF NOT EXISTS focus_timers (
    room VARCHAR(64) PRIMARY KEY,
    state JSONB NOT NULL,
    version INTEGER NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
-- (end of section: analytics)

-- ===================================================================== read caches (issue 18)
-- Hot reads (the feed, resource search) are cached per viewer under a generation that every
-- write to a table they read bumps, in the writing transaction (peerspark_rt/infra/readcache.py):
-- whichever code path or node writes, the next read after its commit computes afresh.
CREATE TABLE IF NOT EXISTS read_generations (
    name VARCHAR(32) PRIMARY KEY,
    generation BIGINT NOT NULL DEFAULT 0
);
-- The generation is the sum of 16 counters: a writer bumps one (chosen by its transaction id),
-- so writers only queue behind each other's commit when they drew the same one.
INSERT INTO read_generations (name) SELECT 'reads-' || g FROM generate_series(0, 15) g
    ON CONFLICT DO NOTHING;

-- Deferred to the commit and once per transaction: the row is locked last, after every other
-- lock the transaction takes, so two writers can wait for each other's commit but never
-- deadlock (a like that holds the generation and then needs its post's row, against a comment
-- that holds the post's row and then needs the generation, would). One counter per
-- transaction, for every cached read: a single row cannot be locked in two orders.
CREATE OR REPLACE FUNCTION peerspark_bump_read_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('peerspark.read_bumped', true) IS DISTINCT FROM txid_current()::text THEN
        UPDATE read_generations SET generation = generation + 1
        WHERE name = 'reads-' || (txid_current() % 16);
        PERFORM set_config('peerspark.read_bumped', txid_current()::text, true);
    END IF;
    RETURN NULL;
END $$;
-- What a cached page shows: posts, likes and bookmarks, pods (is_public), memberships, what
-- pages show of a person (not last_active_at, which changes on every visit), resources, their
-- shares, bookmarks and ratings, and files (links).
DO $$
DECLARE
    spec TEXT[];
BEGIN
    FOREACH spec SLICE 1 IN ARRAY ARRAY[
        ['posts', 'INSERT OR UPDATE OR DELETE'],
        ['post_interactions', 'INSERT OR UPDATE OR DELETE'],
        ['pods', 'INSERT OR UPDATE OR DELETE'],
        ['pod_memberships', 'INSERT OR UPDATE OR DELETE'],
        ['users', 'DELETE OR UPDATE OF username, first_name, last_name, avatar_url, '
                  || 'is_verified, role, account_status'],
        ['resources', 'INSERT OR UPDATE OR DELETE'],
        ['resource_shares', 'INSERT OR UPDATE OR DELETE'],
        ['resource_bookmarks', 'INSERT OR UPDATE OR DELETE'],
        ['resource_ratings', 'INSERT OR UPDATE OR DELETE'],
        ['uploads', 'INSERT OR UPDATE OR DELETE']
    ] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_trigger
                       WHERE tgname = 'trg_read_generation_' || spec[1]
                         AND tgrelid = spec[1]::regclass) THEN
            EXECUTE format(
                'CREATE CONSTRAINT TRIGGER %I AFTER %s ON %I DEFERRABLE INITIALLY DEFERRED '
                'FOR EACH ROW EXECUTE FUNCTION peerspark_bump_read_generation()',
                'trg_read_generation_' || spec[1], spec[2], spec[1]);
        END IF;
        -- (a TRUNCATE takes the table's strongest lock anyway)
        EXECUTE format(
            'CREATE OR REPLACE TRIGGER %I AFTER TRUNCATE ON %I '
            'FOR EACH STATEMENT EXECUTE FUNCTION peerspark_bump_read_generation()',
            'trg_read_generation_truncate_' || spec[1], spec[1]);
    END LOOP;
END $$;
-- (end of section: read caches)

-- ===================================================================== study: flashcards (FSRS)
--
-- Decks are a user's own, or shared with a pod (every active member studies the deck, each on a
-- schedule of their own). Cards are drafts (the assistant's suggestions) until kept; only kept
-- cards are studied. Each user's schedule of a card is one study_card_states row holding the
-- `fsrs` package's Card as JSON (written on the first review), and every review is a
-- study_reviews row, unique by the client's review id (an offline review synced twice counts
-- once). peerspark_rt/study/ explains the rules.
CREATE TABLE IF NOT EXISTS study_decks (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    pod_id UUID REFERENCES pods(id) ON DELETE SET NULL,
    title VARCHAR(200) NOT NULL,
    description TEXT,
    exam_date DATE,
    source_resource_id UUID REFERENCES resources(id) ON DELETE SET NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS idx_study_decks_owner ON study_decks(owner_id, created_at);
CREATE INDEX IF NOT EXISTS idx_study_decks_pod ON study_decks(pod_id) WHERE pod_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS study_cards (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    deck_id UUID NOT NULL REFERENCES study_decks(id) ON DELETE CASCADE,
    front TEXT NOT NULL,
    back TEXT NOT NULL,
    tags TEXT[] NOT NULL DEFAULT '{}',
    status VARCHAR(10) NOT NULL DEFAULT 'kept' CHECK (status IN ('draft', 'kept')),
    upload_id UUID REFERENCES uploads(id) ON DELETE SET NULL,
    source_resource_id UUID REFERENCES resources(id) ON DELETE SET NULL,
    source_session_id UUID,
    created_by UUID REFERENCES users(id) ON DELETE SET NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS idx_study_cards_deck ON study_cards(deck_id, created_at, id);
-- when the card was kept (its place among the deck's new cards, which are offered in this order)
ALTER TABLE study_cards ADD COLUMN IF NOT EXISTS kept_at TIMESTAMPTZ;
CREATE INDEX IF NOT EXISTS idx_study_cards_new ON study_cards(deck_id, kept_at, id)
    WHERE status = 'kept';

-- One user's schedule of one card: `fsrs` is fsrs.Card.to_dict(); `due` is copied out of it
-- (after the exam-date cap) so "what is due" is one range scan of (user_id, due). A row is
-- written with the card's first review (fsrs is NULL only inside that transaction), and only
-- kept cards are reviewed (a kept card never becomes a draft again).
CREATE TABLE IF NOT EXISTS study_card_states (
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    card_id UUID NOT NULL REFERENCES study_cards(id) ON DELETE CASCADE,
    deck_id UUID NOT NULL REFERENCES study_decks(id) ON DELETE CASCADE,
    due TIMESTAMPTZ NOT NULL,
    fsrs JSONB,
    reps INTEGER NOT NULL DEFAULT 0,
    lapses INTEGER NOT NULL DEFAULT 0,
    last_review TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (user_id, card_id)
);
CREATE INDEX IF NOT EXISTS idx_study_card_states_user_due
    ON study_card_states(user_id, due, card_id) INCLUDE (deck_id);
CREATE INDEX IF NOT EXISTS idx_study_card_states_started ON study_card_states(user_id, created_at);

-- Where a user's new cards of a deck begin: every kept card before (kept_at, card_id) has a
-- schedule of theirs, so looking for new cards starts here instead of at the deck's first card
-- (moved forward by GET /api/study/due as it finds them).
CREATE TABLE IF NOT EXISTS study_new_marks (
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    deck_id UUID NOT NULL REFERENCES study_decks(id) ON DELETE CASCADE,
    kept_at TIMESTAMPTZ NOT NULL,
    card_id UUID NOT NULL,
    PRIMARY KEY (user_id, deck_id)
);

CREATE TABLE IF NOT EXISTS study_reviews (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    card_id UUID NOT NULL REFERENCES study_cards(id) ON DELETE CASCADE,
    client_review_id VARCHAR(100) NOT NULL,
    rating SMALLINT NOT NULL CHECK (rating BETWEEN 1 AND 4),
    reviewed_at TIMESTAMPTZ NOT NULL,
    duration_ms INTEGER,
    session_id UUID,
    state VARCHAR(12),
    due_after TIMESTAMPTZ,
    stability DOUBLE PRECISION,
    difficulty DOUBLE PRECISION,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    UNIQUE (user_id, client_review_id)
);
CREATE INDEX IF NOT EXISTS idx_study_reviews_user_at ON study_reviews(user_id, reviewed_at);

CREATE TABLE IF NOT EXISTS study_settings (
    user_id UUID PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    desired_retention DOUBLE PRECISION NOT NULL DEFAULT 0.9
        CHECK (desired_retention > 0.7 AND desired_retention < 0.99),
    new_per_day INTEGER NOT NULL DEFAULT 20 CHECK (new_per_day BETWEEN 0 AND 1000),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

-- Weekly goals (weeks start on Monday in the user's zone); `reminded_week` is the Monday of
-- the last week a reminder went out (one a week at most).
CREATE TABLE IF NOT EXISTS study_goals (
    user_id UUID PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    minutes_per_week INTEGER NOT NULL DEFAULT 0 CHECK (minutes_per_week BETWEEN 0 AND 10080),
    cards_per_week INTEGER NOT NULL DEFAULT 0 CHECK (cards_per_week BETWEEN 0 AND 100000),
    sessions_per_week INTEGER NOT NULL DEFAULT 0 CHECK (sessions_per_week BETWEEN 0 AND 1000),
    reminders BOOLEAN NOT NULL DEFAULT TRUE,
    reminded_week DATE,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

-- A shared deck run live in a session room by its organizer: the cards in order, the one
-- shown (`round`, from 1), and each member's answer per round.
CREATE TABLE IF NOT EXISTS study_live_reviews (
    session_id UUID PRIMARY KEY REFERENCES study_sessions(id) ON DELETE CASCADE,
    deck_id UUID NOT NULL REFERENCES study_decks(id) ON DELETE CASCADE,
    started_by UUID REFERENCES users(id) ON DELETE SET NULL,
    card_ids UUID[] NOT NULL,
    round INTEGER NOT NULL DEFAULT 0,
    status VARCHAR(10) NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'ended')),
    started_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE TABLE IF NOT EXISTS study_live_answers (
    session_id UUID NOT NULL REFERENCES study_live_reviews(session_id) ON DELETE CASCADE,
    round INTEGER NOT NULL,
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    rating SMALLINT NOT NULL CHECK (rating BETWEEN 1 AND 4),
    answered_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (session_id, round, user_id)
);
-- (end of section: study)
-- ===================================================================== gamification (README, "Gamification")
-- The spec's tables (above) plus what the engine keeps. Every point is a row of point_awards:
-- (user, source, source_key) is unique, so an event ('event', its id), an achievement claim
-- ('achievement', its id) or a challenge reward ('challenge', its id) pays once, whoever
-- applies it and however often.
ALTER TABLE user_gamification ADD COLUMN IF NOT EXISTS streak_freezes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE user_gamification ADD COLUMN IF NOT EXISTS league_tier INTEGER NOT NULL DEFAULT 0;
ALTER TABLE achievements ADD COLUMN IF NOT EXISTS code VARCHAR(50);
CREATE UNIQUE INDEX IF NOT EXISTS idx_achievements_code ON achievements(code);
ALTER TABLE user_achievements ADD COLUMN IF NOT EXISTS claimed_at TIMESTAMPTZ;
CREATE INDEX IF NOT EXISTS idx_user_achievements_user ON user_achievements(user_id, earned_at DESC);
ALTER TABLE challenges ADD COLUMN IF NOT EXISTS created_by UUID REFERENCES users(id) ON DELETE SET NULL;
CREATE INDEX IF NOT EXISTS idx_challenges_status ON challenges(status, end_date);
CREATE INDEX IF NOT EXISTS idx_challenges_pod ON challenges(pod_id) WHERE pod_id IS NOT NULL;
ALTER TABLE challenge_participants ADD COLUMN IF NOT EXISTS progress_value INTEGER NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS idx_challenge_participants_user
    ON challenge_participants(user_id) WHERE status = 'active';

CREATE TABLE IF NOT EXISTS point_awards (
    id BIGSERIAL PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    source VARCHAR(20) NOT NULL CHECK (source IN ('event', 'achievement', 'challenge')),
    source_key VARCHAR(100) NOT NULL,
    kind VARCHAR(50) NOT NULL, -- the event's kind, 'achievement' or 'challenge'
    pod_id UUID,
    local_date DATE NOT NULL, -- the user's day (daily caps)
    awarded_at TIMESTAMPTZ NOT NULL, -- the act's time (leaderboard periods, UTC)
    points INTEGER NOT NULL DEFAULT 0,
    study_minutes INTEGER NOT NULL DEFAULT 0,
    UNIQUE (user_id, source, source_key)
);
CREATE INDEX IF NOT EXISTS idx_point_awards_cap ON point_awards(user_id, local_date, kind);
CREATE INDEX IF NOT EXISTS idx_point_awards_at ON point_awards(awarded_at);

-- The leaderboards' source of truth: each user's total per metric ('points', 'study'), scope
-- ('global' or a pod id) and period ('d2026-12-04', 'w2026-W49', 'm2026-12', 'all'), kept
-- with each award. Redis sorted sets (or the in-process store) are rebuilt from it.
CREATE TABLE IF NOT EXISTS leaderboard_scores (
    metric VARCHAR(10) NOT NULL,
    scope VARCHAR(40) NOT NULL,
    period VARCHAR(12) NOT NULL,
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    score BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (metric, scope, period, user_id)
);
CREATE INDEX IF NOT EXISTS idx_leaderboard_scores_rank
    ON leaderboard_scores(metric, scope, period, score DESC, user_id DESC);

-- How far the catch-up job has checked the event log (events below it were all applied).
CREATE TABLE IF NOT EXISTS gamification_cursor (
    name VARCHAR(20) PRIMARY KEY,
    event_id BIGINT NOT NULL
);

-- Follows (the friends leaderboard uses mutual follows).
CREATE TABLE IF NOT EXISTS user_follows (
    follower_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    followee_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (follower_id, followee_id),
    CHECK (follower_id <> followee_id)
);
CREATE INDEX IF NOT EXISTS idx_user_follows_followee ON user_follows(followee_id, created_at DESC, follower_id);
CREATE INDEX IF NOT EXISTS idx_user_follows_follower ON user_follows(follower_id, created_at DESC, followee_id);

-- Weekly leagues: a user's league in a week (joined with their first points of the week).
CREATE TABLE IF NOT EXISTS league_members (
    week VARCHAR(12) NOT NULL,
    tier INTEGER NOT NULL,
    league INTEGER NOT NULL, -- the league's number within (week, tier)
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (week, user_id)
);
CREATE INDEX IF NOT EXISTS idx_league_members_league ON league_members(week, tier, league);
CREATE TABLE IF NOT EXISTS league_weeks_closed (
    week VARCHAR(12) PRIMARY KEY,
    closed_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

-- The starter achievements (criteria format: README, "Achievements").
INSERT INTO achievements (code, name, description, icon, category, criteria, points, rarity) VALUES
    ('first_session', 'First session', 'Attend a study session for 5 minutes or more.', 'door', 'study',
     '{"metric": "sessions_attended", "gte": 1}', 10, 'common'),
    ('ten_sessions', 'Regular', 'Attend 10 study sessions (5 minutes or more each).', 'calendar', 'study',
     '{"metric": "sessions_attended", "gte": 10}', 50, 'rare'),
    ('streak_7', 'One week streak', 'Study 7 days in a row.', 'flame', 'milestone',
     '{"metric": "longest_streak", "gte": 7}', 50, 'rare'),
    ('streak_30', 'One month streak', 'Study 30 days in a row.', 'fire', 'milestone',
     '{"metric": "longest_streak", "gte": 30}', 200, 'epic'),
    ('focus_10h', 'Deep focus', 'Complete 10 hours of focus blocks.', 'target', 'study',
     '{"metric": "focus_minutes", "gte": 600}', 100, 'rare'),
    ('first_accepted_answer', 'Helping hand', 'Have an answer accepted.', 'check', 'social',
     '{"metric": "answers_accepted", "gte": 1}', 25, 'common'),
    ('helpful_resource', 'Helpful resource',
     'Share a resource rated 4.5 or more by at least 5 people.', 'star', 'social',
     '{"metric": "helpful_resources", "gte": 1, "minAverage": 4.5, "minRatings": 5}', 100, 'epic'),
    ('level_5', 'Level 5', 'Reach level 5.', 'medal', 'milestone',
     '{"metric": "level", "gte": 5}', 50, 'rare')
ON CONFLICT (code) DO NOTHING;
-- (end of section: gamification)
