-- A version per SAML connection, raised by every UPDATE of its row (whatever code or instance
-- makes it): each server instance keeps connections parsed in memory and re-reads one only when
-- the version it reads beside the request has moved.
ALTER TABLE saml_connections ADD COLUMN version BIGINT NOT NULL DEFAULT 0;

CREATE TRIGGER saml_connections_version AFTER UPDATE ON saml_connections
FOR EACH ROW WHEN NEW.version = OLD.version
BEGIN
    UPDATE saml_connections SET version = OLD.version + 1 WHERE id = NEW.id;
END;
