;; publish_flood (issue 12, item 4): on DeliverMessage, Publish the message body
;; ("subject\nbody") through its "default" messaging binding again and again, up to
;; 100,000 times, until a Publish fails. Answers on the message's replyTo: "published" when
;; all went out, else the error the provider gave (a quota's message).
;; capabilities: wascc:messaging
(module
  (import "wapc" "__guest_request" (func $guest_request (param i32 i32)))
  (import "wapc" "__guest_response" (func $guest_response (param i32 i32)))
  (import "wapc" "__host_call"
    (func $host_call (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wapc" "__host_error" (func $host_error (param i32)))
  (import "wapc" "__host_error_len" (func $host_error_len (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "default")                           ;; 7
  (data (i32.const 16) "wascc:messaging")                  ;; 15
  (data (i32.const 32) "wascc:keyvalue")                   ;; 14
  (data (i32.const 48) "Publish")                          ;; 7
  (data (i32.const 64) "Set")                              ;; 3
  (data (i32.const 80) "\83\a7subject\db")                 ;; 10: fixmap 3, "subject", str32
  (data (i32.const 96) "\a7replyTo\a0\a4body\c6")          ;; 15: "replyTo" "", "body", bin32
  (data (i32.const 112) "\83\a3key\db")                    ;; 6: fixmap 3, "key", str32
  (data (i32.const 128) "\a5value\db")                     ;; 7: "value", str32
  (data (i32.const 144) "\a7expires\00")                   ;; 9: "expires" 0
  (data (i32.const 160) "published")                       ;; 9
  (data (i32.const 176) "stored")                          ;; 6
  (data (i32.const 192) "\c0")                             ;; 1: nil
  (global $at (mut i32) (i32.const 0))
  (global $len (mut i32) (i32.const 0))
  (global $reply (mut i32) (i32.const 0))
  (global $reply_len (mut i32) (i32.const 0))
  (global $out (mut i32) (i32.const 0))

  ;; Grow the memory so that addresses below $end exist.
  (func $ensure (param $end i32)
    (local $need i32)
    (local.set $need
      (i32.sub (i32.shr_u (i32.add (local.get $end) (i32.const 65535)) (i32.const 16))
               (memory.size)))
    (if (i32.gt_s (local.get $need) (i32.const 0))
      (then (if (i32.eq (memory.grow (local.get $need)) (i32.const -1))
        (then unreachable)))))

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

  ;; ---- writing waSCC's records (MessagePack; lengths always as 32-bit, which any reader takes)

  ;; $v as 4 bytes, big-endian, at $out.
  (func $put32 (param $v i32)
    (i32.store8 (global.get $out) (i32.shr_u (local.get $v) (i32.const 24)))
    (i32.store8 (i32.add (global.get $out) (i32.const 1)) (i32.shr_u (local.get $v) (i32.const 16)))
    (i32.store8 (i32.add (global.get $out) (i32.const 2)) (i32.shr_u (local.get $v) (i32.const 8)))
    (i32.store8 (i32.add (global.get $out) (i32.const 3)) (local.get $v))
    (global.set $out (i32.add (global.get $out) (i32.const 4))))

  ;; The $n bytes at $p, at $out.
  (func $copy (param $p i32) (param $n i32)
    (memory.copy (global.get $out) (local.get $p) (local.get $n))
    (global.set $out (i32.add (global.get $out) (local.get $n))))

  ;; Publish {subject, replyTo: "", body} on the "default" binding, the record written at
  ;; $buf: 1 when it went out, 0 when the provider refused it (its error in __host_error).
  (func $publish (param $s i32) (param $slen i32) (param $b i32) (param $blen i32)
                 (param $buf i32) (result i32)
    (global.set $out (local.get $buf))
    (call $copy (i32.const 80) (i32.const 10))   ;; map of 3, "subject", str32
    (call $put32 (local.get $slen))
    (call $copy (local.get $s) (local.get $slen))
    (call $copy (i32.const 96) (i32.const 15))   ;; "replyTo" "", "body", bin32
    (call $put32 (local.get $blen))
    (call $copy (local.get $b) (local.get $blen))
    (call $host_call (i32.const 0) (i32.const 7) (i32.const 16) (i32.const 15)
                     (i32.const 48) (i32.const 7)
                     (local.get $buf) (i32.sub (global.get $out) (local.get $buf))))

  ;; Answer the message as a waSCC actor does: publish the $n bytes at $p to its replyTo
  ;; (the record written at $buf), and return nil (the unit) to DeliverMessage.
  (func $answer (param $p i32) (param $n i32) (param $buf i32)
    (if (global.get $reply_len)
      (then (drop (call $publish (global.get $reply) (global.get $reply_len)
                                 (local.get $p) (local.get $n) (local.get $buf)))))
    (call $guest_response (i32.const 192) (i32.const 1)))

  ;; Answer with the last host call's error (copied to $err; the answer written after it).
  (func $answer_error (param $err i32)
    (local $n i32)
    (local.set $n (call $host_error_len))
    (if (i32.gt_u (local.get $n) (i32.const 65536)) (then unreachable))
    (call $host_error (local.get $err))
    (call $answer (local.get $err) (local.get $n) (i32.add (local.get $err) (local.get $n))))

  (func (export "__guest_call") (param $op_len i32) (param $msg_len i32) (result i32)
    (local $msg i32) (local $buf i32) (local $i i32) (local $rest i32) (local $sent i32)
    (local.set $msg (i32.add (i32.const 1024) (local.get $op_len)))
    (local.set $buf (i32.add (local.get $msg) (local.get $msg_len)))
    (call $ensure (i32.add (local.get $buf)
                           (i32.add (i32.mul (local.get $msg_len) (i32.const 2)) (i32.const 140000))))
    (call $guest_request (i32.const 1024) (local.get $msg))
    (call $delivered (local.get $msg))
    (block $found  ;; the subject ends at the first "\n"
      (loop $next
        (br_if $found (i32.ge_u (local.get $i) (global.get $len)))
        (br_if $found (i32.eq (i32.load8_u (i32.add (global.get $at) (local.get $i)))
                              (i32.const 10)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (local.set $rest (i32.sub (global.get $len) (local.get $i)))
    (if (local.get $rest) (then (local.set $rest (i32.sub (local.get $rest) (i32.const 1)))))
    (block $done
      (loop $again
        (br_if $done (i32.ge_u (local.get $sent) (i32.const 100000)))
        (if (i32.eqz (call $publish (global.get $at) (local.get $i)
                                    (i32.add (i32.add (global.get $at) (local.get $i)) (i32.const 1))
                                    (local.get $rest) (local.get $buf)))
          (then (call $answer_error (local.get $buf))
                (return (i32.const 1))))
        (local.set $sent (i32.add (local.get $sent) (i32.const 1)))
        (br $again)))
    (call $answer (i32.const 160) (i32.const 9) (local.get $buf))
    (i32.const 1))
)
