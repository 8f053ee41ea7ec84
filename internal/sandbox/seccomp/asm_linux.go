package seccomp

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// asm is a tiny classic-BPF assembler with symbolic labels. Conditional jumps in classic BPF
// carry 8-bit forward offsets (0..255 instructions); assemble resolves labels and fails if a
// jump would need more, so a rule table that grows too long fails loudly instead of jumping to
// the wrong place. Only the instructions a seccomp filter needs are provided.
type asm struct {
	insns  []insn
	labels map[string]int // label -> index of the instruction it names
	seq    int            // for fresh labels
}

type insn struct {
	code   uint16
	k      uint32
	jt, jf string // target labels of a conditional jump; "" means the next instruction
}

func newAsm() *asm { return &asm{labels: map[string]int{}} }

// fresh returns a label name not used before.
func (a *asm) fresh(prefix string) string {
	a.seq++
	return fmt.Sprintf("%s.%d", prefix, a.seq)
}

// label binds l to the next instruction emitted.
func (a *asm) label(l string) {
	if _, dup := a.labels[l]; dup {
		panic("seccomp: label defined twice: " + l) // programming error in this package
	}
	a.labels[l] = len(a.insns)
}

// ldAbs loads the 32-bit word at offset off of struct seccomp_data into A.
func (a *asm) ldAbs(off uint32) {
	a.insns = append(a.insns, insn{code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, k: off})
}

// and sets A &= k.
func (a *asm) and(k uint32) {
	a.insns = append(a.insns, insn{code: unix.BPF_ALU | unix.BPF_AND | unix.BPF_K, k: k})
}

// jeq jumps to jt if A == k, else to jf.
func (a *asm) jeq(k uint32, jt, jf string) {
	a.insns = append(a.insns, insn{code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, k: k, jt: jt, jf: jf})
}

// jset jumps to jt if A & k != 0, else to jf.
func (a *asm) jset(k uint32, jt, jf string) {
	a.insns = append(a.insns, insn{code: unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K, k: k, jt: jt, jf: jf})
}

// ret ends the filter with the seccomp action k.
func (a *asm) ret(k uint32) {
	a.insns = append(a.insns, insn{code: unix.BPF_RET | unix.BPF_K, k: k})
}

// assemble resolves labels into relative offsets.
func (a *asm) assemble() ([]unix.SockFilter, error) {
	out := make([]unix.SockFilter, len(a.insns))
	for pc, in := range a.insns {
		f := unix.SockFilter{Code: in.code, K: in.k}
		if in.code&0x07 == unix.BPF_JMP {
			jt, err := a.offset(pc, in.jt)
			if err != nil {
				return nil, err
			}
			jf, err := a.offset(pc, in.jf)
			if err != nil {
				return nil, err
			}
			f.Jt, f.Jf = jt, jf
		}
		out[pc] = f
	}
	return out, nil
}

func (a *asm) offset(pc int, l string) (uint8, error) {
	if l == "" {
		return 0, nil
	}
	target, ok := a.labels[l]
	if !ok {
		return 0, fmt.Errorf("seccomp: undefined label %q", l)
	}
	off := target - (pc + 1)
	if off < 0 || off > 255 || target >= len(a.insns) {
		return 0, fmt.Errorf("seccomp: jump from %d to label %q (%d) out of range", pc, l, target)
	}
	return uint8(off), nil
}

// validate checks what the kernel's checker would: a non-empty program of at most
// BPF_MAXINSNS instructions, only the opcodes this package emits, every jump landing inside
// the program, and a return as the last instruction (so no path runs off the end).
func validate(prog []unix.SockFilter) error {
	if len(prog) == 0 || len(prog) > unix.BPF_MAXINSNS {
		return fmt.Errorf("seccomp: program has %d instructions (want 1..%d)", len(prog), unix.BPF_MAXINSNS)
	}
	for pc, f := range prog {
		switch f.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			if f.K%4 != 0 || f.K >= seccompDataSize {
				return fmt.Errorf("seccomp: instruction %d loads bad offset %d", pc, f.K)
			}
		case unix.BPF_ALU | unix.BPF_AND | unix.BPF_K, unix.BPF_RET | unix.BPF_K:
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K:
			if pc+1+int(f.Jt) >= len(prog) || pc+1+int(f.Jf) >= len(prog) {
				return fmt.Errorf("seccomp: instruction %d jumps past the end", pc)
			}
		default:
			return fmt.Errorf("seccomp: instruction %d has unexpected opcode %#x", pc, f.Code)
		}
	}
	if last := prog[len(prog)-1]; last.Code != unix.BPF_RET|unix.BPF_K {
		return fmt.Errorf("seccomp: program does not end with a return")
	}
	return nil
}
