;; Blocked transpose of 8-byte elements (complex float32 pairs) inside PFFFT's memory, for RealFft2d.
;; dst[c·dstStride + 8r] = src[r·srcStride + 8c] for r < nr, c < nc, strides in bytes; nr and nc
;; must be even. Each step moves a 2×2 block with two 16-byte loads, two shuffles and two 16-byte
;; stores (WebAssembly SIMD). Two loop orders: the inner loop runs along the short side, so that the
;; long strided side is walked once (columnsOuter for few rows, rowsOuter for few columns).
(module
  (import "env" "memory" (memory 1))
  (func (export "rowsOuter")
    (param $src i32) (param $ss i32) (param $dst i32) (param $ds i32) (param $nr i32) (param $nc i32)
    (local $r i32) (local $c i32) (local $a v128) (local $b v128)
    (local $s i32) (local $d i32)
    (local.set $r (i32.const 0))
    (block $rdone
      (loop $rows
        (br_if $rdone (i32.ge_u (local.get $r) (local.get $nr)))
        ;; s = src + r·ss, d = dst + 8r
        (local.set $s (i32.add (local.get $src) (i32.mul (local.get $r) (local.get $ss))))
        (local.set $d (i32.add (local.get $dst) (i32.shl (local.get $r) (i32.const 3))))
        (local.set $c (i32.const 0))
        (block $cdone
          (loop $cols
            (br_if $cdone (i32.ge_u (local.get $c) (local.get $nc)))
            ;; a = row r, columns c and c+1; b = row r+1, same columns
            (local.set $a (v128.load align=8 (local.get $s)))
            (local.set $b (v128.load align=8 (i32.add (local.get $s) (local.get $ss))))
            ;; column c gets (a0, b0), column c+1 gets (a1, b1)
            (v128.store align=8 (local.get $d)
              (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $a) (local.get $b)))
            (v128.store align=8 (i32.add (local.get $d) (local.get $ds))
              (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $a) (local.get $b)))
            (local.set $s (i32.add (local.get $s) (i32.const 16)))
            (local.set $d (i32.add (local.get $d) (i32.shl (local.get $ds) (i32.const 1))))
            (local.set $c (i32.add (local.get $c) (i32.const 2)))
            (br $cols)))
        (local.set $r (i32.add (local.get $r) (i32.const 2)))
        (br $rows))))
  (func (export "columnsOuter")
    (param $src i32) (param $ss i32) (param $dst i32) (param $ds i32) (param $nr i32) (param $nc i32)
    (local $r i32) (local $c i32) (local $a v128) (local $b v128)
    (local $s i32) (local $d i32)
    (local.set $c (i32.const 0))
    (block $cdone
      (loop $cols
        (br_if $cdone (i32.ge_u (local.get $c) (local.get $nc)))
        ;; s = src + 8c, d = dst + c·ds
        (local.set $s (i32.add (local.get $src) (i32.shl (local.get $c) (i32.const 3))))
        (local.set $d (i32.add (local.get $dst) (i32.mul (local.get $c) (local.get $ds))))
        (local.set $r (i32.const 0))
        (block $rdone
          (loop $rows
            (br_if $rdone (i32.ge_u (local.get $r) (local.get $nr)))
            (local.set $a (v128.load align=8 (local.get $s)))
            (local.set $b (v128.load align=8 (i32.add (local.get $s) (local.get $ss))))
            (v128.store align=8 (local.get $d)
              (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $a) (local.get $b)))
            (v128.store align=8 (i32.add (local.get $d) (local.get $ds))
              (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $a) (local.get $b)))
            (local.set $s (i32.add (local.get $s) (i32.shl (local.get $ss) (i32.const 1))))
            (local.set $d (i32.add (local.get $d) (i32.const 16)))
            (local.set $r (i32.add (local.get $r) (i32.const 2)))
            (br $rows)))
        (local.set $c (i32.add (local.get $c) (i32.const 2)))
        (br $cols))))
)
