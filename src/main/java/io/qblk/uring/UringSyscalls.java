package io.qblk.uring;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;

/**
 * The raw system calls behind io_uring, as FFM downcalls through libc that capture errno:
 * {@code io_uring_setup}, {@code io_uring_enter} and {@code io_uring_register} through the variadic
 * {@code syscall(2)}, plus {@code mmap}/{@code munmap} for the rings and {@code eventfd}/{@code write}
 * for waking the ring owner.
 *
 * <p>Every method returns the raw result; on -1 the caller reads {@link #errno()} on the same thread.
 */
final class UringSyscalls {
    static final long SYS_IO_URING_SETUP = 425, SYS_IO_URING_ENTER = 426, SYS_IO_URING_REGISTER = 427;
    static final int PROT_READ = 1, PROT_WRITE = 2, MAP_SHARED = 1, MAP_POPULATE = 0x8000;
    static final int EFD_CLOEXEC = 02000000;

    private static final Linker LINKER = Linker.nativeLinker();
    private static final StructLayout CAPTURE = Linker.Option.captureStateLayout();
    private static final VarHandle ERRNO = CAPTURE.varHandle(MemoryLayout.PathElement.groupElement("errno"));
    private static final Linker.Option CCS = Linker.Option.captureCallState("errno");
    private static final ValueLayout.OfLong L = ValueLayout.JAVA_LONG;
    private static final ValueLayout.OfInt I = ValueLayout.JAVA_INT;
    private static final java.lang.foreign.AddressLayout A = ValueLayout.ADDRESS;

    /** long syscall(long nr, long a, void *b) — io_uring_setup(entries, params). */
    private static final MethodHandle SYSCALL_LP = variadicSyscall(FunctionDescriptor.of(L, L, L, A));
    /** long syscall(long nr, long fd, long op, void *arg, long nr_args) — io_uring_register. */
    private static final MethodHandle SYSCALL_LLPL = variadicSyscall(FunctionDescriptor.of(L, L, L, L, A, L));
    /** long syscall(long nr, fd, to_submit, min_complete, flags, void *sig, long sigsz) — io_uring_enter. */
    private static final MethodHandle SYSCALL_ENTER = variadicSyscall(FunctionDescriptor.of(L, L, L, L, L, L, A, L));

    private static final MethodHandle MMAP = down("mmap", FunctionDescriptor.of(A, A, L, I, I, I, L));
    private static final MethodHandle MUNMAP = down("munmap", FunctionDescriptor.of(I, A, L));
    private static final MethodHandle EVENTFD = down("eventfd", FunctionDescriptor.of(I, I, I));
    private static final MethodHandle WRITE = down("write", FunctionDescriptor.of(L, I, A, L));
    private static final MethodHandle CLOSE = down("close", FunctionDescriptor.of(I, I));

    private static final ThreadLocal<MemorySegment> STATE =
            ThreadLocal.withInitial(() -> Arena.ofAuto().allocate(CAPTURE));

    private UringSyscalls() {}

    private static MethodHandle variadicSyscall(FunctionDescriptor fd) {
        MemorySegment sym = LINKER.defaultLookup().find("syscall")
                .orElseThrow(() -> new UnsatisfiedLinkError("libc has no syscall"));
        return LINKER.downcallHandle(sym, fd, CCS, Linker.Option.firstVariadicArg(1));
    }

    private static MethodHandle down(String name, FunctionDescriptor fd) {
        MemorySegment sym = LINKER.defaultLookup().find(name)
                .orElseThrow(() -> new UnsatisfiedLinkError("libc has no " + name));
        return LINKER.downcallHandle(sym, fd, CCS);
    }

    static int errno() {
        return (int) ERRNO.get(STATE.get(), 0L);
    }

    static int setup(int entries, MemorySegment params) {
        try {
            return (int) (long) SYSCALL_LP.invokeExact(STATE.get(), SYS_IO_URING_SETUP, (long) entries, params);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static int enter(int ringFd, int toSubmit, int minComplete, int flags) {
        try {
            return (int) (long) SYSCALL_ENTER.invokeExact(STATE.get(), SYS_IO_URING_ENTER, (long) ringFd,
                    (long) toSubmit, (long) minComplete, (long) flags, MemorySegment.NULL, 0L);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static int register(int ringFd, int opcode, MemorySegment arg, int nrArgs) {
        try {
            return (int) (long) SYSCALL_LLPL.invokeExact(STATE.get(), SYS_IO_URING_REGISTER, (long) ringFd,
                    (long) opcode, arg, (long) nrArgs);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** mmap(NULL, length, RW, MAP_SHARED|MAP_POPULATE, fd, offset); returns NULL segment on failure. */
    static MemorySegment mapShared(int fd, long length, long offset) {
        try {
            MemorySegment p = (MemorySegment) MMAP.invokeExact(STATE.get(), MemorySegment.NULL, length,
                    PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, offset);
            if (p.address() == -1L) return MemorySegment.NULL;
            return p.reinterpret(length);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static int unmap(MemorySegment region) {
        try {
            return (int) MUNMAP.invokeExact(STATE.get(), region, region.byteSize());
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static int eventfd(int initval, int flags) {
        try {
            return (int) EVENTFD.invokeExact(STATE.get(), initval, flags);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static long write(int fd, MemorySegment buf, long len) {
        try {
            return (long) WRITE.invokeExact(STATE.get(), fd, buf, len);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static int close(int fd) {
        try {
            return (int) CLOSE.invokeExact(STATE.get(), fd);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    private static RuntimeException rethrow(Throwable t) {
        if (t instanceof RuntimeException r) return r;
        if (t instanceof Error e) throw e;
        return new IllegalStateException(t);
    }
}
