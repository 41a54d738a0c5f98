package io.qblk.cli;

import io.qblk.io.PosixFileBackend;
import io.qblk.qcow2.HeaderRewrite;
import io.qblk.qcow2.MapEntry;
import io.qblk.qcow2.OpenOptions;
import io.qblk.qcow2.Qcow2Image;
import io.qblk.target.BlockTarget;
import io.qblk.target.ImageFormat;
import io.qblk.target.TargetOpener;
import io.qblk.target.TargetOptions;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/**
 * {@code qblk rebase}: gives FILE another backing file, like {@code qemu-img rebase}. Safe mode
 * (default) first copies into FILE every range FILE does not hold itself whose contents differ
 * between the old and the new backing chain, flushes, and only then rewrites the header
 * ({@link HeaderRewrite}, one sector, docs/ordering.md R11): a crash leaves the old backing file
 * with some extra (identical) data in FILE, or the new one. {@code -u} only rewrites the header.
 * {@code -b ""} removes the backing file (safe mode copies everything FILE reads from it).
 */
@Command(name = "rebase", mixinStandardHelpOptions = true,
        description = "Change the backing file of FILE, like qemu-img rebase (safe: copies what differs first; -u: header only).")
public class RebaseCommand implements Callable<Integer> {
    @Spec CommandSpec spec;

    @Option(names = "-f", paramLabel = "FMT", description = "format of FILE (qcow2; probed when absent)")
    String format;

    @Option(names = "-b", paramLabel = "BACKING", description = "the new backing file (stored as given; relative to FILE's directory); \"\" removes it")
    String backing;

    @Option(names = "-F", paramLabel = "FMT", description = "format of the new backing file: qcow2 or raw")
    String backingFormat;

    @Option(names = "-u", description = "unsafe: only rewrite the header, copy nothing")
    boolean unsafe;

    @Option(names = "-p", description = "show progress")
    boolean progress;

    @Option(names = "-q", description = "quiet")
    boolean quiet;

    @Parameters(index = "0", paramLabel = "FILE")
    Path file;

    @Override
    public Integer call() throws IOException {
        if (backing == null) throw new IllegalArgumentException("Must specify backing file (-b) or use unsafe mode (-u)");
        boolean remove = backing.isEmpty();
        if (!remove && backingFormat == null)
            throw new IllegalArgumentException("Could not change the backing file to '" + backing + "': backing format must be specified (-F qcow2|raw)");
        ImageFormat newFmt = remove ? null : ImageFormat.parse(backingFormat);
        if (newFmt != null && !newFmt.hasFile()) throw new IllegalArgumentException("-F " + backingFormat + ": a backing file is qcow2 or raw");
        ImageFormat fmt = ImageFormat.resolve(format, file);
        if (fmt != ImageFormat.QCOW2) throw new IllegalArgumentException(file + ": only qcow2 images have a backing file to change");
        try (PosixFileBackend f = PosixFileBackend.open(file, false)) { // FILE's write lock, for the copy and the header
            if (!unsafe) copyDifferences(f, remove ? null : ImageChain.resolve(file, backing), newFmt);
            HeaderRewrite.of(f).backing(remove ? null : backing, remove ? null : newFmt.name().toLowerCase(java.util.Locale.ROOT)).write();
        }
        return 0;
    }

    /** Safe mode: everything FILE reads from its old chain that the new one reads differently goes into FILE. */
    private void copyDifferences(PosixFileBackend f, Path newPath, ImageFormat newFmt) throws IOException {
        if (newPath != null && !Files.exists(newPath))
            throw new IOException("Could not open new backing file '" + backing + "': " + newPath + ": no such file");
        try (Qcow2Image img = Qcow2Image.open(f, OpenOptions.defaults(), file);
             BlockTarget nb = newPath == null ? null : openNew(newPath, newFmt);
             Arena a = Arena.ofConfined()) {
            long size = img.virtualSize();
            int chunk = ConvertCommand.CHUNK;
            // qemu-img's figures: the image walked in 2 MiB steps, each worth the same share
            Progress p = Progress.of(spec.commandLine().getOut(), progress && !quiet, 2.0);
            float share = size == 0 ? 100f : 100f / (size / Math.min(size, chunk));
            p.start();
            MemorySegment oldBuf = a.allocate(chunk, 4096), newBuf = a.allocate(chunk, 4096);
            long newSize = nb == null ? 0 : nb.size();
            for (long step = 0; step < size; step += chunk) {
                for (MapEntry e : img.map(step, Math.min(chunk, size - step))) {
                    if (e.depth() == 0 && e.present()) continue; // FILE holds it itself
                    long off = e.start();
                    int n = (int) e.length();
                    MemorySegment o = oldBuf.asSlice(0, n), nw = newBuf.asSlice(0, n);
                    img.read(off, o);
                    nw.fill((byte) 0);
                    if (off < newSize) nb.read(off, nw.asSlice(0, Math.min(n, newSize - off)));
                    // per 64 KiB, so equal parts stay unallocated
                    for (int s = 0; s < n; s += 65536) {
                        int len = Math.min(65536, n - s);
                        if (MemorySegment.mismatch(o, s, s + len, nw, s, s + len) >= 0) img.write(off + s, o.asSlice(s, len));
                    }
                }
                p.set(p.percent() + share);
            }
            img.flush(); // R11: the copies are durable before the header names the new backing file
            p.finish();
        }
    }

    private BlockTarget openNew(Path p, ImageFormat fmt) throws IOException {
        try {
            return TargetOpener.open(p, TargetOptions.defaults().withFormat(fmt).withReadOnly(true));
        } catch (IOException | RuntimeException e) {
            throw new IOException("Could not open new backing file '" + backing + "': " + CliErrors.message(e), e);
        }
    }
}
