include $(sort $(wildcard $(BR2_EXTERNAL_RUNNER_APPLIANCE_PATH)/package/*/*.mk))
