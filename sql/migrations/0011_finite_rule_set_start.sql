-- A rule set starts at a finite instant. asyncpg writes the first and last
-- instants Python has as -infinity and infinity, and reads them back as datetimes
-- without an offset, which every lookup of the version in force then failed on.
-- The service refuses such starts (rules.service.publish); this is the second guard.
-- NOT VALID: a row stored before this migration must not stop it from applying.
ALTER TABLE rule_sets
    ADD CONSTRAINT rule_sets_effective_from_finite CHECK (isfinite(effective_from)) NOT VALID;
