;; kv_flood (issue 12, item 4): on HandleMessage, Set keys <body>AA, <body>AB, ... to
;; values of 1,000,000 bytes on its "default" keyvalue binding, up to 200 of them (200 MB),
;; until a Set fails. Answers "stored" when every Set succeeded, else the error the
;; provider gave (a quota's message), as its response, so the requester reads it.
;; capabilities: wascc:messaging, wascc:keyvalue
(module
  (import "wapc" "__guest_request" (func $guest_request (param i32 i32)))
  (import "wapc" "__guest_response" (func $guest_response (param i32 i32)))
  (import "wapc" "__host_call"
    (func $host_call (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wapc" "__host_error" (func $host_error (param i32)))
  (import "wapc" "__host_error_len" (func $host_error_len (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 48) "default")            ;; 7
  (data (i32.const 64) "wascc:keyvalue")     ;; 14
  (data (i32.const 96) "Set")                ;; 3
  (data (i32.const 112) "stored")            ;; 6

  (func $ensure (param $end i32)
    (local $need i32)
    (local.set $need
      (i32.sub (i32.shr_u (i32.add (local.get $end) (i32.const 65535)) (i32.const 16))
               (memory.size)))
    (if (i32.gt_s (local.get $need) (i32.const 0))
      (then (if (i32.eq (memory.grow (local.get $need)) (i32.const -1))
        (then unreachable)))))

  ;; payload at 4096: body (the key prefix, at most 64 bytes), two letters, '=', the value
  (func (export "__guest_call") (param $op_len i32) (param $msg_len i32) (result i32)
    (local $key_len i32) (local $val i32) (local $i i32) (local $n i32) (local $out i32)
    (call $ensure (i32.add (i32.const 4096) (local.get $msg_len)))
    (call $guest_request (i32.const 1024) (i32.const 4096))
    (if (i32.gt_u (local.get $msg_len) (i32.const 64)) (then (local.set $msg_len (i32.const 64))))
    (local.set $key_len (i32.add (local.get $msg_len) (i32.const 2)))
    (local.set $val (i32.add (i32.add (i32.const 4096) (local.get $key_len)) (i32.const 1)))
    (local.set $out (i32.add (local.get $val) (i32.const 1000000)))
    (call $ensure (i32.add (local.get $out) (i32.const 65536)))
    (i32.store8 (i32.sub (local.get $val) (i32.const 1)) (i32.const 61))  ;; '='
    (memory.fill (local.get $val) (i32.const 120) (i32.const 1000000))   ;; 'x' * 1e6
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (i32.const 200)))
        (i32.store8 (i32.add (i32.const 4096) (local.get $msg_len))
                    (i32.add (i32.const 65) (i32.div_u (local.get $i) (i32.const 26))))
        (i32.store8 (i32.add (i32.const 4097) (local.get $msg_len))
                    (i32.add (i32.const 65) (i32.rem_u (local.get $i) (i32.const 26))))
        (if (i32.eqz (call $host_call
              (i32.const 48) (i32.const 7) (i32.const 64) (i32.const 14)
              (i32.const 96) (i32.const 3)
              (i32.const 4096) (i32.add (local.get $key_len) (i32.const 1000001))))
          (then
            (local.set $n (call $host_error_len))
            (if (i32.gt_u (local.get $n) (i32.const 65536)) (then unreachable))
            (call $host_error (local.get $out))
            (call $guest_response (local.get $out) (local.get $n))
            (return (i32.const 1))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (call $guest_response (i32.const 112) (i32.const 6))
    (i32.const 1))
)
