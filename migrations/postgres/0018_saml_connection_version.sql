-- A version per SAML connection, raised by every UPDATE of its row (whatever code or instance
-- makes it): each server instance keeps connections parsed in memory and re-reads one only when
-- the version it reads beside the request has moved.
ALTER TABLE saml_connections ADD COLUMN version BIGINT NOT NULL DEFAULT 0;

CREATE FUNCTION saml_connections_next_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := OLD.version + 1;
    RETURN NEW;
END;
$$;
CREATE TRIGGER saml_connections_version BEFORE UPDATE ON saml_connections
FOR EACH ROW EXECUTE FUNCTION saml_connections_next_version();
