-- The catalog both endpoints read: 5000 items in 8 categories, generated so a
-- fresh database is useful at once. Keep in step with ../sqlite/.
CREATE TABLE catalog_items (
    id          BIGINT PRIMARY KEY,
    sku         TEXT   NOT NULL UNIQUE,
    name        TEXT   NOT NULL,
    category    TEXT   NOT NULL,
    price_cents BIGINT NOT NULL CHECK (price_cents >= 0),
    stock       BIGINT NOT NULL CHECK (stock >= 0)
);

CREATE INDEX catalog_items_category ON catalog_items (category, price_cents, stock);

INSERT INTO catalog_items (id, sku, name, category, price_cents, stock)
SELECT i,
       'SKU-' || lpad(i::text, 5, '0'),
       'Item ' || i,
       (ARRAY['books', 'games', 'garden', 'kitchen', 'music', 'outdoor', 'tools', 'toys'])[i % 8 + 1],
       99 + (i * 7919) % 20000,
       (i * 31) % 500
FROM generate_series(1, 5000) AS i;
