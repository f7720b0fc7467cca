//! pactown runtime
