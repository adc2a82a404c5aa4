;; Hands the host imports pointers at or past 2^31 (negative as i32) and spans past the end
;; of its one-page memory; the length of the delivered message's body chooses the import:
;;   0: __guest_request(-13, 0)       the operation would be written at memory end - 13
;;   1: __guest_response(-16, 32)
;;   2: __console_log(65530, 100)     a span that starts inside and ends outside
;;   3: __host_error(-1)              after a failed host call, so there is an error to copy
;; Every one must trap (the instance stops), never write or read anywhere. The message is
;; first read as a waSCC actor reads it (DeliverMessage {subject, replyTo, body}).
(module
  (import "wapc" "__guest_request" (func $guest_request (param i32 i32)))
  (import "wapc" "__guest_response" (func $guest_response (param i32 i32)))
  (import "wapc" "__console_log" (func $console_log (param i32 i32)))
  (import "wapc" "__host_call"
    (func $host_call (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wapc" "__host_error" (func $host_error (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "nowhere")    ;; 7 bytes: a binding, namespace and operation
  (global $at (mut i32) (i32.const 0))
  (global $len (mut i32) (i32.const 0))
  (global $reply (mut i32) (i32.const 0))
  (global $reply_len (mut i32) (i32.const 0))
  ;; ---- reading the DeliverMessage as vinculum's wascc:messaging provider writes it (waSCC's
  ;; codec: a map of subject, replyTo and body, in that order; str, str, bin)

  ;; The $n bytes at $p as a big-endian number.
  (func $be (param $p i32) (param $n i32) (result i32)
    (local $v i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $v (i32.or (i32.shl (local.get $v) (i32.const 8))
                              (i32.load8_u (local.get $p))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $next)))
    (local.get $v))

  ;; The str or bin at $p (fixstr, str 8/16/32, bin 8/16/32): its bytes in $at and $len;
  ;; the position after it.
  (func $str (param $p i32) (result i32)
    (local $t i32) (local $w i32)
    (local.set $t (i32.load8_u (local.get $p)))
    (local.set $p (i32.add (local.get $p) (i32.const 1)))
    (if (i32.le_u (i32.sub (local.get $t) (i32.const 0xc4)) (i32.const 2))
      (then (local.set $w (i32.shl (i32.const 1) (i32.sub (local.get $t) (i32.const 0xc4))))))
    (if (i32.le_u (i32.sub (local.get $t) (i32.const 0xd9)) (i32.const 2))
      (then (local.set $w (i32.shl (i32.const 1) (i32.sub (local.get $t) (i32.const 0xd9))))))
    (global.set $len (i32.and (local.get $t) (i32.const 31)))
    (if (local.get $w)
      (then (global.set $len (call $be (local.get $p) (local.get $w)))
            (local.set $p (i32.add (local.get $p) (local.get $w)))))
    (global.set $at (local.get $p))
    (i32.add (local.get $p) (global.get $len)))

  ;; Read the DeliverMessage at $msg: its body in $at/$len, its replyTo in $reply/$reply_len.
  (func $delivered (param $msg i32)
    (local $p i32)
    (local.set $p (call $str (call $str (i32.add (local.get $msg) (i32.const 1)))))  ;; subject
    (local.set $p (call $str (call $str (local.get $p))))                           ;; replyTo
    (global.set $reply (global.get $at))
    (global.set $reply_len (global.get $len))
    (drop (call $str (call $str (local.get $p)))))                                  ;; body

  (func (export "__guest_call") (param $op_len i32) (param $msg_len i32) (result i32)
    (local $n i32)
    (if (i32.gt_u (i32.add (local.get $op_len) (local.get $msg_len)) (i32.const 60000))
      (then unreachable))
    (call $guest_request (i32.const 1024) (i32.add (i32.const 1024) (local.get $op_len)))
    (call $delivered (i32.add (i32.const 1024) (local.get $op_len)))
    (local.set $n (global.get $len))
    (if (i32.eqz (local.get $n))
      (then (call $guest_request (i32.const -13) (i32.const 0))))
    (if (i32.eq (local.get $n) (i32.const 1))
      (then (call $guest_response (i32.const -16) (i32.const 32))))
    (if (i32.eq (local.get $n) (i32.const 2))
      (then (call $console_log (i32.const 65530) (i32.const 100))))
    (if (i32.eq (local.get $n) (i32.const 3))
      (then
        (drop (call $host_call (i32.const 0) (i32.const 7) (i32.const 0) (i32.const 7)
                               (i32.const 0) (i32.const 7) (i32.const 0) (i32.const 0)))
        (call $host_error (i32.const -1))))
    (i32.const 1))
)
