;; Hands the host imports pointers at or past 2^31 (negative as i32) and spans past the end
;; of its one-page memory; the message length chooses the import:
;;   0: __guest_request(-13, 0)       the operation would be written at memory end - 13
;;   1: __guest_response(-16, 32)
;;   2: __console_log(65530, 100)     a span that starts inside and ends outside
;;   3: __host_error(-1)              after a failed host call, so there is an error to copy
;; Every one must trap (the instance stops), never write or read anywhere.
(module
  (import "wapc" "__guest_request" (func $guest_request (param i32 i32)))
  (import "wapc" "__guest_response" (func $guest_response (param i32 i32)))
  (import "wapc" "__console_log" (func $console_log (param i32 i32)))
  (import "wapc" "__host_call"
    (func $host_call (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wapc" "__host_error" (func $host_error (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "nowhere")    ;; 7 bytes: a binding, namespace and operation
  (func (export "__guest_call") (param $op_len i32) (param $msg_len i32) (result i32)
    (if (i32.eqz (local.get $msg_len))
      (then (call $guest_request (i32.const -13) (i32.const 0))))
    (if (i32.eq (local.get $msg_len) (i32.const 1))
      (then (call $guest_response (i32.const -16) (i32.const 32))))
    (if (i32.eq (local.get $msg_len) (i32.const 2))
      (then (call $console_log (i32.const 65530) (i32.const 100))))
    (if (i32.eq (local.get $msg_len) (i32.const 3))
      (then
        (drop (call $host_call (i32.const 0) (i32.const 7) (i32.const 0) (i32.const 7)
                               (i32.const 0) (i32.const 7) (i32.const 0) (i32.const 0)))
        (call $host_error (i32.const -1))))
    (i32.const 1))
)
