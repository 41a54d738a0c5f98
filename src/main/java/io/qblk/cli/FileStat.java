package io.qblk.cli;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.nio.file.Files;
import java.nio.file.Path;

/** Disk space a file really occupies (st_blocks * 512), what qemu-img calls "disk size"/actual-size. */
public final class FileStat {
    private FileStat() {}

    private static final MethodHandle STAT;
    static {
        Linker l = Linker.nativeLinker();
        MethodHandle h = null;
        try {
            h = l.downcallHandle(l.defaultLookup().find("stat").orElseThrow(),
                    FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.ADDRESS));
        } catch (RuntimeException e) {
            // leave null: callers fall back
        }
        STAT = h;
    }

    /**
     * The data ranges {start, end} of a sparse file, from lseek SEEK_DATA/SEEK_HOLE; the whole file
     * as one range when the filesystem cannot tell.
     */
    public static java.util.List<long[]> dataRanges(Path path) throws IOException {
        long size = Files.size(path);
        java.util.List<long[]> out = new java.util.ArrayList<>();
        if (size == 0) return out;
        try (io.qblk.io.PosixFileBackend f = io.qblk.io.PosixFileBackend.open(path, true)) {
            for (io.qblk.io.IoBackend.Extent x : f.extents(0, size)) if (x.data()) out.add(new long[] {x.offset(), x.offset() + x.length()});
        }
        return out;
    }

    /** Allocated bytes of the file; falls back to its length where stat is unavailable. */
    public static long allocatedBytes(Path path) throws IOException {
        if (STAT != null && "amd64".equals(System.getProperty("os.arch"))) {
            try (Arena a = Arena.ofConfined()) {
                MemorySegment buf = a.allocate(256, 8);
                int rc = (int) STAT.invokeExact(a.allocateFrom(path.toString()), buf);
                if (rc == 0) return buf.get(ValueLayout.JAVA_LONG, 64) * 512; // x86_64 struct stat: st_blocks at 64
            } catch (Throwable t) {
                // fall through to the length
            }
        }
        return Files.size(path);
    }
}
