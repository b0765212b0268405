"""The love supermarket: store catalogues, redemptions of points for goods, returns."""
