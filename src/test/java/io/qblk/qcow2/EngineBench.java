package io.qblk.qcow2;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

/**
 * Not a test: 4 KiB random read/write throughput, for comparison with
 * {@code qemu-img bench -t none -c N -d DEPTH -s 4k [-w] img}. Usage: EngineBench image.qcow2 read|write ops threads
 */
public final class EngineBench {
    public static void main(String[] a) throws Exception {
        Path p = Path.of(a[0]);
        boolean write = a[1].equals("write");
        int ops = Integer.parseInt(a[2]);
        int threads = Integer.parseInt(a[3]);
        if (!Files.exists(p)) {
            Qcow2Image.create(p, CreateOptions.defaults(1L << 30));
        }
        try (Qcow2Image img = Qcow2Image.open(p, OpenOptions.defaults())) {
            long size = img.virtualSize();
            for (int round = 0; round < 2; round++) {
                long t0 = System.nanoTime();
                try (ExecutorService ex = Executors.newVirtualThreadPerTaskExecutor()) {
                    List<Future<?>> fs = new ArrayList<>();
                    for (int t = 0; t < threads; t++) {
                        final int id = t;
                        fs.add(ex.submit(() -> {
                            MemorySegment buf = Arena.ofAuto().allocate(4096, 4096);
                            SplittableRandom r = new SplittableRandom(id * 7919L + round());
                            for (int i = 0; i < ops / threads; i++) {
                                long off = (r.nextLong(size / 4096)) * 4096;
                                if (write) img.write(off, buf);
                                else img.read(off, buf);
                            }
                            return null;
                        }));
                    }
                    for (Future<?> f : fs) f.get();
                }
                if (write) img.flush();
                double s = (System.nanoTime() - t0) / 1e9;
                System.out.printf("%s round %d: %d ops in %.3f s = %.0f IOPS%n", a[1], round, ops, s, ops / s);
            }
        }
    }

    private static long round() {
        return System.nanoTime();
    }
}
