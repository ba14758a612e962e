-- Search by price with equality filters on the common columns (opus/api/services/search_branches.py).
-- Each index starts with columns a search fixes and ends with the keyset (price, id): one combination of values
-- (natural, ROUND, D, VS1, 1.00-1.49 ct) is one range already in price order. A page takes the first page of
-- each range asked for and keeps the cheapest page of them, instead of walking the price index and discarding
-- every stone that does not match. lab_grown leads because it has two values: a search that does not filter it
-- takes both. The INCLUDEd columns let the other common filters be checked on the index entry alone.

-- Carat bands at the weights the trade prices by (a 0.90 ct stone costs far more than a 0.89): a carat range
-- becomes the few bands it overlaps, and only the bands at its ends hold stones the range leaves out. Price
-- rises with weight, so without the band the cheapest stones of every range would be the small ones a carat
-- filter discards. CARAT_BAND_EDGES in search_branches.py lists the same edges (a test holds the two together).
CREATE FUNCTION diamond_carat_band(carats numeric) RETURNS smallint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE
        WHEN carats < 0.30 THEN 0 WHEN carats < 0.50 THEN 1 WHEN carats < 0.70 THEN 2 WHEN carats < 0.90 THEN 3
        WHEN carats < 1.00 THEN 4 WHEN carats < 1.50 THEN 5 WHEN carats < 2.00 THEN 6 WHEN carats < 3.00 THEN 7
        WHEN carats < 5.00 THEN 8 ELSE 9
    END;

-- shapes, colours, clarities and carats (lab-grown or not).
CREATE INDEX diamonds_active_grades_price
    ON diamonds (lab_grown, shape, color, clarity, diamond_carat_band(carats), price, id) INCLUDE (carats)
    WHERE status = 'active';

-- shapes with carats, or colours, or clarities (lab-grown or not), when the one above would take too many ranges.
CREATE INDEX diamonds_active_shape_band_price
    ON diamonds (lab_grown, shape, diamond_carat_band(carats), price, id) INCLUDE (carats, color, clarity)
    WHERE status = 'active';
