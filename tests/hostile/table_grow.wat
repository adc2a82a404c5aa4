;; Grows its table by 100 million elements (8 bytes or more each: 800 MB of host memory
;; outside the linear memory) in every call. The store allows 10,000 elements: table.grow
;; returns -1 and the guest reports it as a guest error.
(module
  (import "wapc" "__guest_response" (func $guest_response (param i32 i32)))
  (import "wapc" "__guest_error" (func $guest_error (param i32 i32)))
  (memory (export "memory") 1)
  (table 1 funcref)
  (data (i32.const 0) "table.grow refused")   ;; 18 bytes
  (data (i32.const 32) "table grown")         ;; 11 bytes
  (func (export "__guest_call") (param i32 i32) (result i32)
    (if (i32.eq (table.grow (ref.null func) (i32.const 100000000)) (i32.const -1))
      (then
        (call $guest_error (i32.const 0) (i32.const 18))
        (return (i32.const 0))))
    (call $guest_response (i32.const 32) (i32.const 11))
    (i32.const 1))
)
