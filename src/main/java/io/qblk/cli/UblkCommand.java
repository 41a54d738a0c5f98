package io.qblk.cli;

import io.qblk.io.CacheMode;
import io.qblk.qcow2.MetadataWrite;
import io.qblk.target.BlockTarget;
import io.qblk.target.FileIo;
import io.qblk.target.ImageFormat;
import io.qblk.target.TargetOpener;
import io.qblk.target.TargetOptions;
import io.qblk.ublk.UblkControl;
import io.qblk.ublk.UblkDeviceInfo;
import io.qblk.ublk.UblkException;
import io.qblk.ublk.UblkExport;
import io.qblk.ublk.UblkServer;
import io.qblk.ublk.UblkUnavailableException;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;

/** {@code qblk ublk export|list|del|recover}: ublk devices on this kernel. */
@Command(name = "ublk", mixinStandardHelpOptions = true,
        description = "Serve images as /dev/ublkbN and manage ublk devices (needs root and CONFIG_BLK_DEV_UBLK).",
        subcommands = {UblkCommand.Export.class, UblkCommand.ListDevices.class, UblkCommand.Delete.class, UblkCommand.Recover.class})
public class UblkCommand {

    /** Runs a ublk action with the ublk exit codes: 0, 1 error, 69 no ublk driver. */
    static int guarded(CommandSpec spec, Callable<Integer> action) {
        PrintWriter err = spec.commandLine().getErr();
        try {
            return action.call();
        } catch (UblkUnavailableException e) {
            err.println("qblk: " + e.getMessage());
            return UblkUnavailableException.EXIT_CODE;
        } catch (Exception e) {
            err.println("qblk: " + CliErrors.message(e));
            return 1;
        } finally {
            err.flush();
        }
    }

    /** Help text of --metadata on the ublk commands. */
    static final String METADATA_HELP = "qcow2: writethrough (default for ublk: every completed write survives this process "
            + "dying, so a filesystem mounted on the device keeps working across kill -9 + recover; allocating writes wait "
            + "for a shared flush) or writeback (metadata cached until the next flush; faster allocating writes).";

    /** Help text of --cache on the ublk commands. */
    static final String CACHE_HELP = "image page-cache use: none (O_DIRECT for aligned requests, like ublksrv and qemu-nbd "
            + "--cache=none) or writeback (buffered); default none, or the environment variable QBLK_UBLK_CACHE";

    /** The environment variable that sets the ublk commands' --cache default (read here, at the CLI's edge only). */
    static final String CACHE_ENV = "QBLK_UBLK_CACHE";

    /**
     * --cache as given, else QBLK_UBLK_CACHE, else none (measured in docs/performance.md, issue 11;
     * like ublksrv and qemu-nbd --cache=none). The library only ever gets the chosen mode.
     */
    static CacheMode cacheMode(String cache) {
        if (cache != null) return CacheMode.parse(cache);
        String env = System.getenv(CACHE_ENV);
        return env == null || env.isBlank() ? CacheMode.NONE : CacheMode.parse(env);
    }

    /** Help text of --file-io on the ublk commands. */
    static final String FILE_IO_HELP = "ublk: how the image file is read and written: auto (default: requests of 128 KiB and more "
            + "through the queue's io_uring, smaller ones with pread/pwrite on the request's thread), ring (every request "
            + "through the ring) or pread (no ring); the environment variable QBLK_UBLK_FILE_IO sets the default.";

    /** Default of --file-io: the environment is read here, at the edge, never by the library. */
    static final String FILE_IO_DEFAULT = "${env:QBLK_UBLK_FILE_IO:-auto}";

    /** How a ublk device opens FILE: type qcow2, raw, null (with nullSize) or auto (probed); file I/O through the queues' rings. */
    static TargetOptions ublkOptions(String type, String fileIo, MetadataWrite metadata, long nullSize, CacheMode cache) {
        ImageFormat format = type == null || type.equalsIgnoreCase("auto") ? null : ImageFormat.parse(type);
        return TargetOptions.defaults().withFormat(format).withFileIo(FileIo.forUblk(fileIo)).withMetadata(metadata).withNullSize(nullSize).withCache(cache);
    }

    /** Opens FILE as the given target type (qcow2, raw; null takes --size), like {@code qblk export}. */
    static BlockTarget openTarget(String type, Path file, long nullSize, MetadataWrite metadata, String fileIo, CacheMode cache) throws IOException {
        TargetOptions o = ublkOptions(type, fileIo, metadata, nullSize, cache);
        if (o.format() != ImageFormat.NULL && file == null) throw new IllegalArgumentException("missing FILE");
        BlockTarget t = TargetOpener.open(o.format() == ImageFormat.NULL ? null : file, o);
        if (t.writeRefusal() != null) System.err.println("qblk: serving read-only: " + t.writeRefusal());
        return t;
    }

    static long parseSize(String s) {
        return ExportCommand.parseSize(s);
    }

    static void requireDriver() throws UblkException {
        if (!UblkControl.available()) {
            try (UblkControl ignored = UblkControl.open()) {
                // modprobe may have loaded it
            }
        }
    }

    @Command(name = "export", mixinStandardHelpOptions = true,
            description = "Serve FILE as a new /dev/ublkbN in the foreground (prints the device); SIGTERM stops it.")
    public static class Export implements Callable<Integer> {
        @Spec CommandSpec spec;
        @Option(names = {"-t", "--type"}, defaultValue = "auto", description = "qcow2, raw or null (default: detected from FILE)") String type;
        @Option(names = {"-q", "--queues"}, defaultValue = "1", description = "hardware queues (default ${DEFAULT-VALUE})") int queues;
        @Option(names = {"-d", "--depth"}, defaultValue = "64", description = "queue depth (default ${DEFAULT-VALUE})") int depth;
        @Option(names = "--size", defaultValue = "1G", description = "size of a null device (default ${DEFAULT-VALUE})") String size;
        @Option(names = "--id", defaultValue = "-1", description = "device id to ask for (default: any)") int id;
        @Option(names = "--metadata", defaultValue = "writethrough", paramLabel = "writethrough|writeback", description = METADATA_HELP) String metadata;
        @Option(names = "--file-io", defaultValue = FILE_IO_DEFAULT, paramLabel = "auto|ring|pread", description = FILE_IO_HELP) String fileIo;
        @Option(names = "--cache", paramLabel = "none|writeback", description = CACHE_HELP) String cache;
        @Parameters(arity = "0..1", paramLabel = "FILE", description = "image file (not for -t null)") Path file;

        @Override
        public Integer call() {
            return guarded(spec, () -> {
                UblkServer.Options o = UblkServer.Options.defaults().withQueues(queues).withDepth(depth).withDevId(id);
                UblkServer.checkLimits(o);
                requireDriver();
                BlockTarget target = openTarget(type, file, parseSize(size), MetadataWrite.parse(metadata), fileIo, cacheMode(cache));
                return UblkExport.serve(target, o, System.out);
            });
        }
    }

    @Command(name = "list", mixinStandardHelpOptions = true, description = "List ublk devices: id, state, queues, depth, server pid, block device.")
    public static class ListDevices implements Callable<Integer> {
        @Spec CommandSpec spec;

        @Override
        public Integer call() {
            return guarded(spec, () -> {
                try (UblkControl c = UblkControl.open()) {
                    PrintWriter out = spec.commandLine().getOut();
                    List<Integer> ids = new ArrayList<>();
                    try (DirectoryStream<Path> ds = Files.newDirectoryStream(Path.of("/dev"), "ublkc*")) {
                        for (Path p : ds) {
                            try {
                                ids.add(Integer.parseInt(p.getFileName().toString().substring(5)));
                            } catch (NumberFormatException ignored) {
                                // not ours
                            }
                        }
                    }
                    ids.sort(null);
                    out.printf("%-4s %-9s %6s %6s %8s  %s%n", "ID", "STATE", "QUEUES", "DEPTH", "PID", "DEVICE");
                    for (int id : ids) {
                        UblkDeviceInfo i;
                        try {
                            i = c.deviceInfo(id);
                        } catch (UblkException e) {
                            continue; // deleted meanwhile
                        }
                        out.printf("%-4d %-9s %6d %6d %8d  %s%n", id, i.stateName(), i.queues(), i.queueDepth(),
                                i.serverPid(), Files.exists(Path.of("/dev/ublkb" + id)) ? "/dev/ublkb" + id : "-");
                    }
                    out.flush();
                    return 0;
                }
            });
        }
    }

    @Command(name = "del", mixinStandardHelpOptions = true, description = "Stop and delete ublk device ID (its server, if alive, exits).")
    public static class Delete implements Callable<Integer> {
        @Spec CommandSpec spec;
        @Parameters(paramLabel = "ID") int id;

        @Override
        public Integer call() {
            return guarded(spec, () -> {
                try (UblkControl c = UblkControl.open()) {
                    c.deviceInfo(id);
                    c.stopDevice(id);
                    // a live server closes /dev/ublkcN after the stop; DEL_DEV waits for that
                    c.deleteDevice(id);
                    return 0;
                }
            });
        }
    }

    @Command(name = "recover", mixinStandardHelpOptions = true,
            description = "Re-attach to device ID after its server died (kill -9) and serve FILE on the same /dev/ublkbN.")
    public static class Recover implements Callable<Integer> {
        @Spec CommandSpec spec;
        @Option(names = {"-t", "--type"}, defaultValue = "auto", description = "qcow2, raw or null (default: detected from FILE)") String type;
        @Option(names = "--size", defaultValue = "1G", description = "size of a null device (default ${DEFAULT-VALUE})") String size;
        @Option(names = "--metadata", defaultValue = "writethrough", paramLabel = "writethrough|writeback", description = METADATA_HELP) String metadata;
        @Option(names = "--file-io", defaultValue = FILE_IO_DEFAULT, paramLabel = "auto|ring|pread", description = FILE_IO_HELP) String fileIo;
        @Option(names = "--cache", paramLabel = "none|writeback", description = CACHE_HELP) String cache;
        @Parameters(index = "0", paramLabel = "ID") int id;
        @Parameters(index = "1", arity = "0..1", paramLabel = "FILE") Path file;

        @Override
        public Integer call() {
            return guarded(spec, () -> {
                requireDriver();
                TargetOptions o = ublkOptions(type, fileIo, MetadataWrite.parse(metadata), parseSize(size), cacheMode(cache));
                BlockTarget target;
                if (o.format() == ImageFormat.NULL) {
                    target = TargetOpener.open(null, o);
                } else {
                    if (file == null) throw new IllegalArgumentException("missing FILE");
                    // The image is checked and repaired before the kernel lets I/O resume (END_USER_RECOVERY).
                    target = TargetOpener.openForRecovery(file, o, line -> System.err.println("qblk: " + line));
                }
                return UblkExport.recover(id, target, System.out);
            });
        }
    }
}
