//! The domain logic of the slow endpoint: what the per-category figures
//! are, derived from the rows the database aggregates.

use std::collections::BTreeMap;

use contract::CategorySummary;

use crate::db::CategoryStock;

/// Per category: item count, units in stock, stock value, mean price and
/// share of the total stock value (rounded to 0.01 %).
pub fn summarise(rows: &[CategoryStock]) -> BTreeMap<String, CategorySummary> {
    let total_value: i64 = rows.iter().map(|r| r.inventory_value_cents).sum();
    rows.iter()
        .map(|r| {
            let share = if total_value > 0 {
                (r.inventory_value_cents as f64 * 10_000.0 / total_value as f64).round() / 100.0
            } else {
                0.0
            };
            let summary = CategorySummary {
                items: r.items,
                units_in_stock: r.units_in_stock,
                inventory_value_cents: r.inventory_value_cents,
                average_price_cents: if r.items > 0 {
                    r.price_total_cents / r.items
                } else {
                    0
                },
                share_of_value_pct: share,
            };
            (r.category.clone(), summary)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::CategorySummary;

    fn row(category: &str, items: i64, units: i64, value: i64, prices: i64) -> CategoryStock {
        CategoryStock {
            category: category.into(),
            items,
            units_in_stock: units,
            inventory_value_cents: value,
            price_total_cents: prices,
        }
    }

    #[test]
    fn summarise_derives_means_and_shares() {
        let s = summarise(&[row("toys", 2, 3, 500, 400), row("books", 1, 10, 1500, 150)]);
        assert_eq!(
            s["toys"],
            CategorySummary {
                items: 2,
                units_in_stock: 3,
                inventory_value_cents: 500,
                average_price_cents: 200,
                share_of_value_pct: 25.0
            }
        );
        assert_eq!(s["books"].share_of_value_pct, 75.0);
    }

    #[test]
    fn summarise_survives_an_empty_catalog() {
        let s = summarise(&[row("toys", 0, 0, 0, 0)]);
        assert_eq!(s["toys"].average_price_cents, 0);
        assert_eq!(s["toys"].share_of_value_pct, 0.0);
    }
}
