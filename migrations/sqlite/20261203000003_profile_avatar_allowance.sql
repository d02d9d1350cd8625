-- Profile: a picture and a personal allowance (SQLite). Same columns and rules as the PostgreSQL
-- migration (see its comments); money is an exact decimal TEXT as everywhere in this schema.
-- SQLite adds one column per statement; a CHECK on an added column is allowed.
ALTER TABLE users ADD COLUMN avatar_url TEXT
    CHECK (avatar_url IS NULL OR (substr(avatar_url, 1, 8) = 'https://'
                                  AND length(avatar_url) <= 2048));
ALTER TABLE users ADD COLUMN personal_allowance TEXT
    CHECK (personal_allowance IS NULL OR substr(personal_allowance, 1, 1) <> '-');
