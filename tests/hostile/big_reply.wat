;; Large payloads. An empty message: a 2 MiB reply (twice the NATS max payload). Any other
;; message: a host call (wascc:keyvalue, binding default, Set) with a payload of the message
;; length times 64 KiB, answered with the host call's error (or "stored").
(module
  (import "wapc" "__guest_response" (func $guest_response (param i32 i32)))
  (import "wapc" "__host_call"
    (func $host_call (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wapc" "__host_error_len" (func $host_error_len (result i32)))
  (import "wapc" "__host_error" (func $host_error (param i32)))
  (memory (export "memory") 40)   ;; 2.5 MiB
  (data (i32.const 0) "default")           ;; 7
  (data (i32.const 16) "wascc:keyvalue")   ;; 14
  (data (i32.const 32) "Set")              ;; 3
  (data (i32.const 48) "stored")           ;; 6
  (data (i32.const 64) "k=")               ;; the payload starts with a key
  (func (export "__guest_call") (param $op_len i32) (param $msg_len i32) (result i32)
    (if (i32.eqz (local.get $msg_len))
      (then
        (call $guest_response (i32.const 0) (i32.const 2097152))
        (return (i32.const 1))))
    (if (call $host_call (i32.const 0) (i32.const 7) (i32.const 16) (i32.const 14)
                         (i32.const 32) (i32.const 3)
                         (i32.const 64) (i32.mul (local.get $msg_len) (i32.const 65536)))
      (then
        (call $guest_response (i32.const 48) (i32.const 6))
        (return (i32.const 1))))
    (call $host_error (i32.const 128))
    (call $guest_response (i32.const 128) (call $host_error_len))
    (i32.const 1))
)
