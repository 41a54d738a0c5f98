package io.qblk.json;

import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.PrettyPrinter;
import com.fasterxml.jackson.core.util.DefaultIndenter;
import com.fasterxml.jackson.core.util.DefaultPrettyPrinter;
import com.fasterxml.jackson.core.util.Separators;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.qblk.qcow2.CheckReport;
import io.qblk.qcow2.BitmapInfo;
import io.qblk.qcow2.EncryptionHeader;
import io.qblk.qcow2.ImageInfo;
import io.qblk.qcow2.MapEntry;
import io.qblk.qcow2.SnapshotInfo;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.List;

/**
 * The JSON of {@code qemu-img info/check/map --output=json}, rendered with Jackson from the
 * engine's plain records, for both edges: the CLI prints it in qemu-img's layout ({@link #pretty},
 * {@link #mapText}) so scripts written against qemu-img read qblk's output unchanged; the service
 * returns the same nodes in its REST answers. Key names and order are qemu-img 7.2's.
 */
public final class QemuJson {
    private QemuJson() {}

    private static final ObjectMapper MAPPER = new ObjectMapper();

    /** qemu's layout: four-space indent, {@code "key": value}. */
    private static final DefaultPrettyPrinter PRETTY = new DefaultPrettyPrinter()
            .withObjectIndenter(new DefaultIndenter("    ", "\n"))
            .withArrayIndenter(new DefaultIndenter("    ", "\n"))
            .withSeparators(Separators.createDefaultInstance().withObjectFieldValueSpacing(Separators.Spacing.AFTER));

    public static ObjectNode object() {
        return MAPPER.createObjectNode();
    }

    /** A JSON object as qemu-img prints it. */
    public static String pretty(JsonNode node) {
        try {
            return MAPPER.writer(PRETTY).writeValueAsString(node);
        } catch (JsonProcessingException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** {@code qemu-img info --output=json} of a qcow2 image; {@code actualSize} as the caller measured it. */
    public static ObjectNode info(ImageInfo i, long actualSize) {
        ObjectNode j = object();
        boolean v3 = "1.1".equals(i.compat());
        String backing = i.backingFilename();
        if (backing != null && i.backingFormat() != null) j.put("backing-filename-format", i.backingFormat());
        j.put("virtual-size", i.virtualSize());
        j.put("filename", i.filename());
        j.put("cluster-size", i.clusterSize());
        j.put("format", "qcow2");
        j.put("actual-size", actualSize);
        ObjectNode data = object();
        data.put("compat", v3 ? "1.1" : "0.10");
        data.put("compression-type", i.compressionType() == null ? "zlib" : i.compressionType());
        if (v3) data.put("lazy-refcounts", i.lazyRefcounts());
        data.put("refcount-bits", i.refcountBits());
        if (i.encryption() != null) data.set("encrypt", encryption(i.encryption()));
        if (i.dataFile() != null) {
            data.put("data-file", i.dataFile());
            data.put("data-file-raw", i.dataFileRaw());
        }
        if (v3) {
            data.put("corrupt", i.corrupt());
            data.put("extended-l2", i.extendedL2());
        }
        ObjectNode specific = j.putObject("format-specific");
        specific.put("type", "qcow2");
        specific.set("data", data);
        if (backing != null) {
            j.put("full-backing-filename", fullBackingName(i.filename(), backing));
            j.put("backing-filename", backing);
        }
        if (i.encryption() != null) j.put("encrypted", true);
        j.put("dirty-flag", i.dirtyFlag());
        return j;
    }

    /**
     * {@code info} with its {@code "snapshots"} array (none: {@code info} unchanged), where qemu-img
     * prints it: after {@code backing-filename-format}, before everything else.
     */
    public static ObjectNode withSnapshots(ObjectNode info, List<SnapshotInfo> snapshots) {
        if (snapshots.isEmpty()) return info;
        ObjectNode j = object();
        if (info.has("backing-filename-format")) j.set("backing-filename-format", info.get("backing-filename-format"));
        ArrayNode a = j.putArray("snapshots");
        for (SnapshotInfo s : snapshots) {
            ObjectNode o = a.addObject();
            if (s.icount() != -1) o.put("icount", s.icount());
            o.put("vm-clock-nsec", s.vmClockNsec() % 1_000_000_000L);
            o.put("name", s.name());
            o.put("date-sec", s.dateSec());
            o.put("date-nsec", s.dateNsec());
            o.put("vm-clock-sec", s.vmClockNsec() / 1_000_000_000L);
            o.put("id", s.id());
            o.put("vm-state-size", s.vmStateSize());
        }
        info.properties().forEach(e -> {
            if (!j.has(e.getKey())) j.set(e.getKey(), e.getValue());
        });
        return j;
    }

    /**
     * {@code info} with the persistent bitmaps in the format-specific data, where qemu-img puts them
     * (after "lazy-refcounts"); unchanged when there are none.
     */
    public static ObjectNode withBitmaps(ObjectNode info, List<BitmapInfo> bitmaps) {
        if (bitmaps.isEmpty()) return info;
        ObjectNode old = (ObjectNode) info.path("format-specific").path("data");
        ObjectNode data = object();
        ArrayNode list = MAPPER.createArrayNode();
        for (BitmapInfo b : bitmaps) {
            ObjectNode o = list.addObject();
            ArrayNode flags = o.putArray("flags");
            b.flags().forEach(flags::add);
            o.put("name", b.name());
            o.put("granularity", b.granularity());
        }
        old.properties().forEach(e -> {
            data.set(e.getKey(), e.getValue());
            if (e.getKey().equals("lazy-refcounts")) data.set("bitmaps", list);
        });
        ((ObjectNode) info.get("format-specific")).set("data", data);
        return info;
    }

    /**
     * qemu-img's human rendering of a JSON object (info's "Format specific information"): one
     * {@code key: value} line per field, dashes in keys shown as spaces, nested objects and lists
     * ({@code [i]:}) indented by four more spaces.
     */
    public static void humanLines(JsonNode node, String indent, List<String> out) {
        node.properties().forEach(f -> humanField(f.getKey().replace('-', ' '), f.getValue(), indent, out));
    }

    private static void humanField(String key, JsonNode v, String indent, List<String> out) {
        if (v.isObject()) {
            out.add(indent + key + ":");
            humanLines(v, indent + "    ", out);
        } else if (v.isArray()) {
            out.add(indent + key + ":");
            for (int i = 0; i < v.size(); i++) humanField("[" + i + "]", v.get(i), indent + "    ", out);
        } else {
            out.add(indent + key + ": " + v.asText());
        }
    }

    /** The {@code encrypt} object of qcow2's format-specific info. */
    public static ObjectNode encryption(EncryptionHeader e) {
        ObjectNode j = object();
        if (!"luks".equals(e.format())) {
            j.put("format", e.format());
            return j;
        }
        j.put("ivgen-alg", e.ivgenAlg());
        if (e.ivgenHashAlg() != null) j.put("ivgen-hash-alg", e.ivgenHashAlg());
        j.put("hash-alg", e.hashAlg());
        j.put("cipher-alg", e.cipherAlg());
        j.put("uuid", e.uuid());
        j.put("format", e.format());
        j.put("cipher-mode", e.cipherMode());
        ArrayNode slots = j.putArray("slots");
        for (EncryptionHeader.Slot s : e.slots()) {
            ObjectNode o = slots.addObject();
            o.put("active", s.active());
            if (s.active()) o.put("iters", s.iters());
            o.put("key-offset", s.keyOffset());
            if (s.active()) o.put("stripes", s.stripes());
        }
        j.put("payload-offset", e.payloadOffset());
        j.put("master-key-iters", e.masterKeyIters());
        return j;
    }

    /** {@code qemu-img info --output=json} of a raw file. */
    public static ObjectNode rawInfo(String filename, long virtualSize, long actualSize) {
        ObjectNode j = object();
        j.put("virtual-size", virtualSize);
        j.put("filename", filename);
        j.put("format", "raw");
        j.put("actual-size", actualSize);
        j.put("dirty-flag", false);
        return j;
    }

    /** The backing file name as qemu combines it with the image's name: absolute as is, else beside the image. */
    public static String fullBackingName(String image, String backing) {
        if (backing.startsWith("/")) return backing;
        int slash = image.lastIndexOf('/');
        return slash < 0 ? backing : image.substring(0, slash + 1) + backing;
    }

    /** {@code qemu-img check --output=json}: its field order, zero counters left out as qemu does. */
    public static ObjectNode check(CheckReport r) {
        ObjectNode j = object();
        j.put("image-end-offset", r.imageEndOffset());
        if (r.compressedClusters() > 0) j.put("compressed-clusters", r.compressedClusters());
        j.put("total-clusters", r.totalClusters());
        if (r.corruptionsFixed() > 0) j.put("corruptions-fixed", r.corruptionsFixed());
        if (r.corruptions() > 0) j.put("corruptions", r.corruptions());
        j.put("check-errors", r.checkErrors());
        if (r.leaksFixed() > 0) j.put("leaks-fixed", r.leaksFixed());
        if (r.leaks() > 0) j.put("leaks", r.leaks());
        if (r.allocatedClusters() > 0) j.put("allocated-clusters", r.allocatedClusters());
        j.put("filename", r.filename());
        j.put("format", r.format());
        if (r.fragmentedClusters() > 0) j.put("fragmented-clusters", r.fragmentedClusters());
        return j;
    }

    /** {@code qemu-img map --output=json} entries. */
    public static ArrayNode map(List<MapEntry> entries) {
        ArrayNode a = MAPPER.createArrayNode();
        for (MapEntry e : entries) {
            ObjectNode o = a.addObject();
            o.put("start", e.start());
            o.put("length", e.length());
            o.put("depth", e.depth());
            o.put("present", e.present());
            o.put("zero", e.zero());
            o.put("data", e.data());
            if (e.offset() >= 0) o.put("offset", e.offset());
        }
        return a;
    }

    /** The map as qemu-img prints it: one {@code { "key": value, ...}} object per line. */
    public static String mapText(List<MapEntry> entries) {
        try {
            return MAPPER.writer(new MapPrinter()).writeValueAsString(map(entries));
        } catch (JsonProcessingException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** qemu-img map's layout: {@code [{ "start": 0, "length": 512, ...},\n{ ...}]}. */
    private static final class MapPrinter implements PrettyPrinter {
        @Override public void writeRootValueSeparator(JsonGenerator g) {}
        @Override public void writeStartObject(JsonGenerator g) throws IOException { g.writeRaw("{ "); }
        @Override public void writeEndObject(JsonGenerator g, int n) throws IOException { g.writeRaw('}'); }
        @Override public void writeObjectEntrySeparator(JsonGenerator g) throws IOException { g.writeRaw(", "); }
        @Override public void writeObjectFieldValueSeparator(JsonGenerator g) throws IOException { g.writeRaw(": "); }
        @Override public void writeStartArray(JsonGenerator g) throws IOException { g.writeRaw('['); }
        @Override public void writeEndArray(JsonGenerator g, int n) throws IOException { g.writeRaw(']'); }
        @Override public void writeArrayValueSeparator(JsonGenerator g) throws IOException { g.writeRaw(",\n"); }
        @Override public void beforeArrayValues(JsonGenerator g) {}
        @Override public void beforeObjectEntries(JsonGenerator g) {}
    }
}
