-- The catalog both endpoints read: 5000 items in 8 categories, generated so a
-- fresh database is useful at once. Keep in step with ../postgres/.
CREATE TABLE catalog_items (
    id          INTEGER PRIMARY KEY,
    sku         TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL,
    category    TEXT    NOT NULL,
    price_cents BIGINT  NOT NULL CHECK (price_cents >= 0),
    stock       BIGINT  NOT NULL CHECK (stock >= 0)
);

CREATE INDEX catalog_items_category ON catalog_items (category, price_cents, stock);

WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < 5000)
INSERT INTO catalog_items (id, sku, name, category, price_cents, stock)
SELECT i,
       printf('SKU-%05d', i),
       'Item ' || i,
       CASE i % 8
           WHEN 0 THEN 'books'   WHEN 1 THEN 'games' WHEN 2 THEN 'garden' WHEN 3 THEN 'kitchen'
           WHEN 4 THEN 'music'   WHEN 5 THEN 'outdoor' WHEN 6 THEN 'tools' ELSE 'toys'
       END,
       99 + (i * 7919) % 20000,
       (i * 31) % 500
FROM seq;
