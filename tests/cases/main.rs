//! Integration tests of burn-novograd: parity with third-party implementations on every
//! backend, Burn's Learner, records and devices.

mod backends;
mod learner;
mod moment;
mod state;
