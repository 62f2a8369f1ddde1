//! webhook-inbox (being written).
