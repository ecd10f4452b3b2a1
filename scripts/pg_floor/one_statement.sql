-- The same four writes as writes.sql in one statement (one round trip, one implicit
-- transaction) for `size` sign-ins (`pgbench -D size=N`): with 1, the least PostgreSQL can be
-- asked to do for a sign-in; with more, what a server that gathers concurrent sign-ins and
-- commits them together (group commit) sends, the audit chain head taken once for the group.
\set n random(0, 9999)
WITH replay AS (
  INSERT INTO saml_replay (idp_entity_id, message_id, expires_at)
    SELECT 'http' || chr(58) || '//idp.test/metadata', md5(random()::text || g), 4102444800000
    FROM generate_series(1, :size::int) g
), head AS (
  INSERT INTO audit_chain_heads (chain, seq, hash) VALUES ('org-1', :size::bigint, 'genesis')
    ON CONFLICT (chain) DO UPDATE SET seq = audit_chain_heads.seq + :size::bigint,
      hash = md5(random()::text) || md5(random()::text)
    RETURNING seq, hash
), event AS (
  INSERT INTO audit_events (id, org_id, occurred_at, action, actor_type, actor_id, actor_label,
      target_type, target_id, ip, user_agent, details, chain, seq, prev_hash, hash)
    SELECT gen_random_uuid()::text, 'org-1', 1796550811514, 'sso.signin.succeeded', 'account',
      'account-' || :n::text, 'user' || :n::text || '@load.test', 'saml_connection',
      'connection-1', '127.0.0.1', NULL,
      replace('{"email"#"user@load.test","idp_initiated"#true}', '#', chr(58)),
      'org-1', head.seq - :size::bigint + g, head.hash, md5(random()::text) || md5(random()::text)
    FROM head, generate_series(1, :size::int) g
)
INSERT INTO sessions (id, account_id, sign_in_id, data, expires_at)
  SELECT md5(random()::text || g) || md5(random()::text), 'account-' || :n::text,
    md5(random()::text), replace('{"auth_method"#"saml","auth_at"#1796550811520}', '#', chr(58)),
    4102444800000
  FROM generate_series(1, :size::int) g;
