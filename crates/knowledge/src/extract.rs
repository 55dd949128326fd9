//! Text extraction (to be written).
