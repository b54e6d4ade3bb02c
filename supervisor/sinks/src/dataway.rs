//! The Dataway sink (being written).
