;; Imports a function no host provides: instantiation must fail with a reason.
(module
  (import "wapc" "__launch_missiles" (func $launch (param i32)))
  (memory (export "memory") 1)
  (func (export "__guest_call") (param i32 i32) (result i32) (i32.const 1))
)
