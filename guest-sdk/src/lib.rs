//! pactown guest sdk
