;; counter: each HandleMessage increments a key in its keyvalue binding ("default") and
;; answers with the new count. The key is the message body, or "count" when it is empty.
;; capabilities: wascc:messaging, wascc:keyvalue
(module
  (import "wapc" "__guest_request" (func $guest_request (param i32 i32)))
  (import "wapc" "__guest_response" (func $guest_response (param i32 i32)))
  (import "wapc" "__guest_error" (func $guest_error (param i32 i32)))
  (import "wapc" "__host_call"
    (func $host_call (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wapc" "__host_response" (func $host_response (param i32)))
  (import "wapc" "__host_response_len" (func $host_response_len (result i32)))
  (import "wapc" "__host_error" (func $host_error (param i32)))
  (import "wapc" "__host_error_len" (func $host_error_len (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "HandleMessage")      ;; 13 bytes
  (data (i32.const 48) "default")            ;; 7
  (data (i32.const 64) "wascc:keyvalue")     ;; 14
  (data (i32.const 96) "Incr")               ;; 4
  (data (i32.const 112) "count")             ;; 5
  (data (i32.const 128) "unknown operation") ;; 17

  (func $ensure (param $end i32)
    (local $need i32)
    (local.set $need
      (i32.sub (i32.shr_u (i32.add (local.get $end) (i32.const 65535)) (i32.const 16))
               (memory.size)))
    (if (i32.gt_s (local.get $need) (i32.const 0))
      (then (if (i32.eq (memory.grow (local.get $need)) (i32.const -1))
        (then unreachable)))))

  (func $eq (param $a i32) (param $alen i32) (param $b i32) (param $blen i32) (result i32)
    (local $i i32)
    (if (i32.ne (local.get $alen) (local.get $blen)) (then (return (i32.const 0))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $alen)))
        (if (i32.ne (i32.load8_u (i32.add (local.get $a) (local.get $i)))
                    (i32.load8_u (i32.add (local.get $b) (local.get $i))))
          (then (return (i32.const 0))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 1))

  (func (export "__guest_call") (param $op_len i32) (param $msg_len i32) (result i32)
    (local $msg i32) (local $key i32) (local $key_len i32) (local $out i32) (local $n i32)
    (local.set $msg (i32.add (i32.const 1024) (local.get $op_len)))
    (local.set $out (i32.add (local.get $msg) (local.get $msg_len)))
    (call $ensure (local.get $out))
    (call $guest_request (i32.const 1024) (local.get $msg))
    (if (i32.eqz (call $eq (i32.const 1024) (local.get $op_len) (i32.const 16) (i32.const 13)))
      (then
        (call $guest_error (i32.const 128) (i32.const 17))
        (return (i32.const 0))))
    (local.set $key (local.get $msg))
    (local.set $key_len (local.get $msg_len))
    (if (i32.eqz (local.get $msg_len))
      (then (local.set $key (i32.const 112)) (local.set $key_len (i32.const 5))))
    (if (i32.eqz (call $host_call
          (i32.const 48) (i32.const 7) (i32.const 64) (i32.const 14)
          (i32.const 96) (i32.const 4) (local.get $key) (local.get $key_len)))
      (then
        (local.set $n (call $host_error_len))
        (call $ensure (i32.add (local.get $out) (local.get $n)))
        (call $host_error (local.get $out))
        (call $guest_error (local.get $out) (local.get $n))
        (return (i32.const 0))))
    (local.set $n (call $host_response_len))
    (call $ensure (i32.add (local.get $out) (local.get $n)))
    (call $host_response (local.get $out))
    (call $guest_response (local.get $out) (local.get $n))
    (i32.const 1))
)
