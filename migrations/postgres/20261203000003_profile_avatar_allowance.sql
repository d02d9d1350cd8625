-- Profile: a picture and a personal allowance (PostgreSQL). Both columns are nullable and have no
-- default, so this migration only adds: a node of the previous version keeps serving on it
-- during a rolling upgrade (docs/deploy.md).
--
-- `avatar_url`: an absolute `https://` URL the apps load the picture from, at most 2048
-- characters. The server checks the whole syntax (host, no user info, URL characters only); the
-- checks here are the backstop that no other `INSERT` or `UPDATE` can get around.
-- `personal_allowance`: the monthly amount the user keeps for themselves, in the user's
-- `currency`, like `income`: exact NUMERIC, never negative.
ALTER TABLE users
    ADD COLUMN avatar_url TEXT
        CHECK (avatar_url LIKE 'https://%' AND length(avatar_url) <= 2048),
    ADD COLUMN personal_allowance NUMERIC CHECK (personal_allowance >= 0);
