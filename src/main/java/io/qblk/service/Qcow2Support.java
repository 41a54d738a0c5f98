package io.qblk.service;

import io.qblk.qcow2.BackingPolicy;
import io.qblk.qcow2.CreateOptions;
import io.qblk.qcow2.MetadataWrite;
import io.qblk.qcow2.OpenOptions;
import io.qblk.qcow2.Qcow2Exception;
import io.qblk.qcow2.Qcow2Image;
import io.qblk.qcow2.RepairMode;
import io.qblk.target.BlockTarget;
import io.qblk.target.TargetOpener;
import io.qblk.target.Qcow2Target;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Locale;

/** The service's only contact with the qcow2 engine (io.qblk.qcow2). Info and check answer qemu-img's JSON. */
final class Qcow2Support {
    private Qcow2Support() {}

    /**
     * Opens a device's image. A ublk device ({@code onQueueRing}) also writes its metadata through
     * (like {@code qblk export --ublk}): every completed write then survives the service dying, so a
     * filesystem mounted on the device keeps working across a user recovery.
     */
    static BlockTarget open(Path path, boolean readOnly, BackingPolicy backing, boolean onQueueRing) throws IOException {
        OpenOptions options = OpenOptions.defaults().withReadOnly(readOnly).withBackingPolicy(backing)
                .withMetadataWrite(onQueueRing ? MetadataWrite.WRITETHROUGH : MetadataWrite.WRITEBACK);
        if (!onQueueRing) return new Qcow2Target(Qcow2Image.open(path, options));
        io.qblk.io.IoBackend file = io.qblk.io.FileBackends.openOnCallerRing(path, readOnly, TargetOpener.FileIo.forUblk().ringMinBytes(),
                io.qblk.ublk.UblkExport.defaultCacheMode());
        try {
            return new Qcow2Target(Qcow2Image.open(file, options, path), file);
        } catch (IOException | RuntimeException e) {
            file.close();
            throw e;
        }
    }

    static void create(Path path, long size, Integer clusterSize) throws IOException {
        CreateOptions o = CreateOptions.defaults(size);
        if (clusterSize != null) o = o.withClusterSize(clusterSize);
        try {
            o.validate();
        } catch (IllegalArgumentException e) {
            throw ApiException.badRequest(e.getMessage());
        }
        Qcow2Image.create(path, o);
    }

    /** qemu-img info --output=json fields. */
    static String info(Path path, BackingPolicy backing) throws IOException {
        try (Qcow2Image image = Qcow2Image.open(path, OpenOptions.defaults().withReadOnly(true).withBackingPolicy(backing))) {
            return image.info().toJson();
        }
    }

    /** qemu-img check --output=json fields, plus "messages" and "clean". */
    static String check(Path path, String repair, BackingPolicy backing) throws IOException {
        RepairMode mode = RepairMode.valueOf(repair.toUpperCase(Locale.ROOT));
        try (Qcow2Image image = Qcow2Image.open(path, OpenOptions.defaults().withReadOnly(mode == RepairMode.NONE).withBackingPolicy(backing))) {
            var report = image.check(mode);
            String json = report.toJson();
            StringBuilder msgs = new StringBuilder("[");
            for (String m : report.messages()) {
                if (msgs.length() > 1) msgs.append(", ");
                msgs.append(com.fasterxml.jackson.databind.node.JsonNodeFactory.instance.textNode(m).toString());
            }
            msgs.append("]");
            return json.substring(0, json.lastIndexOf('}')).stripTrailing() + ",\n    \"clean\": " + report.clean()
                    + ",\n    \"messages\": " + msgs + "\n}";
        }
    }

    static boolean isFormatError(IOException e) {
        return e instanceof Qcow2Exception;
    }
}
