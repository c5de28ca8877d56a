// Package pool holds Tidepool's domain types — pool specs, pool and member
// records, their states — and the validation rules of SPEC.md §2. It does no
// I/O, so the controller, the gateway and the CLI can all share it.
package pool
