-- The writes no durable, audited, replay-protected sign-in can skip, as a transaction of four
-- statements: the assertion's ID in the replay cache, the organization's audit chain head, the
-- sign-in's audit event (with the audit log's eight indexes) and the browser session's row.
-- JSON and URL literals spell ':' as chr(58): pgbench reads ':name' as one of its variables.
\set n random(0, 9999)
BEGIN;
INSERT INTO saml_replay (idp_entity_id, message_id, expires_at)
  VALUES ('http' || chr(58) || '//idp.test/metadata', md5(random()::text), 4102444800000);
INSERT INTO audit_chain_heads (chain, seq, hash) VALUES ('org-1', 1, 'genesis')
  ON CONFLICT (chain) DO UPDATE SET seq = audit_chain_heads.seq + 1,
    hash = md5(random()::text) || md5(random()::text)
  RETURNING seq AS seq, hash AS prev \gset
INSERT INTO audit_events (id, org_id, occurred_at, action, actor_type, actor_id, actor_label,
    target_type, target_id, ip, user_agent, details, chain, seq, prev_hash, hash)
  VALUES (gen_random_uuid()::text, 'org-1', 1796550811514, 'sso.signin.succeeded', 'account',
    'account-' || :n::text, 'user' || :n::text || '@load.test', 'saml_connection', 'connection-1',
    '127.0.0.1', NULL, replace('{"email"#"user@load.test","idp_initiated"#true}', '#', chr(58)),
    'org-1', :seq::bigint, :prev, md5(random()::text) || md5(random()::text));
INSERT INTO sessions (id, account_id, sign_in_id, data, expires_at)
  VALUES (md5(random()::text) || md5(random()::text), 'account-' || :n::text, md5(random()::text),
    replace('{"auth_method"#"saml","auth_at"#1796550811520}', '#', chr(58)),
    4102444800000);
COMMIT;
