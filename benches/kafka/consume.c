/*
 * Reads a whole topic from the beginning with librdkafka and prints records/s, with nothing
 * between the client library and the count: no interpreter (consume.py pays Python per record)
 * and no output (kcat formats and writes each record).
 *
 *     cc -O2 -o consume benches/kafka/consume.c -lrdkafka    # Debian: librdkafka-dev
 *     ./consume 127.0.0.1:9092 TOPIC
 *
 * One consumer, every partition assigned from offset 0 without a group, librdkafka's large-read
 * fetch settings; it stops at the high watermarks read before it starts and prints one JSON
 * object: records, seconds, recordsPerSec.
 */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static void set(rd_kafka_conf_t *conf, const char *name, const char *value) {
    char error[256];
    if (rd_kafka_conf_set(conf, name, value, error, sizeof error) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "%s: %s\n", name, error);
        exit(2);
    }
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s BROKER TOPIC\n", argv[0]);
        return 2;
    }
    const char *topic = argv[2];
    char error[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    set(conf, "bootstrap.servers", argv[1]);
    set(conf, "group.id", "unused");
    set(conf, "enable.auto.commit", "false");
    set(conf, "fetch.max.bytes", "52428800");
    set(conf, "max.partition.fetch.bytes", "10485760");
    set(conf, "queued.max.messages.kbytes", "1048576");
    set(conf, "fetch.wait.max.ms", "100");
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, error, sizeof error);
    if (!rk) {
        fprintf(stderr, "rd_kafka_new: %s\n", error);
        return 1;
    }
    rd_kafka_poll_set_consumer(rk);

    rd_kafka_topic_t *handle = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *metadata;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, handle, &metadata, 10000);
    if (err || metadata->topic_cnt != 1 || metadata->topics[0].err) {
        fprintf(stderr, "metadata: %s\n", rd_kafka_err2str(err ? err : metadata->topics[0].err));
        return 1;
    }
    int partitions = metadata->topics[0].partition_cnt;
    rd_kafka_topic_partition_list_t *assignment = rd_kafka_topic_partition_list_new(partitions);
    long long total = 0;
    for (int i = 0; i < partitions; i++) {
        int32_t partition = metadata->topics[0].partitions[i].id;
        int64_t low, high;
        err = rd_kafka_query_watermark_offsets(rk, topic, partition, &low, &high, 10000);
        if (err) {
            fprintf(stderr, "watermarks: %s\n", rd_kafka_err2str(err));
            return 1;
        }
        total += high - low;
        rd_kafka_topic_partition_list_add(assignment, topic, partition)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    }
    rd_kafka_metadata_destroy(metadata);
    rd_kafka_topic_destroy(handle);

    double start = now();
    rd_kafka_assign(rk, assignment);
    long long read = 0;
    while (read < total) {
        rd_kafka_message_t *message = rd_kafka_consumer_poll(rk, 1000);
        if (!message)
            continue;
        if (!message->err)
            read++;
        else if (message->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            fprintf(stderr, "consume: %s\n", rd_kafka_message_errstr(message));
        rd_kafka_message_destroy(message);
    }
    double seconds = now() - start;
    printf("{\"records\": %lld, \"seconds\": %.3f, \"recordsPerSec\": %.0f}\n", read, seconds,
           read / seconds);
    rd_kafka_topic_partition_list_destroy(assignment);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return 0;
}
