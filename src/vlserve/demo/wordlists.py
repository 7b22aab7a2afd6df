"""General vocabulary mixed into the demo tokenizer's corpus.

The chart templates alone do not support 2,048 BPE symbols; these lists add the everyday English
and Chinese words that prompts and answers about images are made of.
"""

from __future__ import annotations

__all__ = ["EN_WORDS", "ZH_WORDS"]

_EN_TEXT = """
    the of and to in is that for it as was with be by on not he this are or his from at which but
    have an they you were her she there one all we their been has would when if will more no out so
    said what up its about than into them can only other new some could time these two may then do
    first any my now such like our over man me even most made after also did many before must through
    back years where much your way well down should because each just those people how too little
    state good very make world still own see men work long get here between both life being under
    never day same another know while last might us great old year off come since against go came
    right used take three small large number part place case point group problem fact hand high
    information image picture photo chart graph figure table document page report text title label
    axis legend series category total average percent percentage increase decrease growth decline
    change compare comparison difference higher lower highest lowest maximum minimum trend period
    quarter month week daily annual yearly company market business finance financial income profit
    loss revenue expense cost price customer product service sales region country city north south
    east west center left right top bottom middle above below next previous before after first second
    third fourth fifth last answer question please describe explain summarize extract return output
    input result value values data dataset field fields schema object array string boolean null true
    false format json markdown list item items count name type content message user assistant system
    model server request response error status ready health metrics trace token tokens image_url
    detect object box boxes region crop scan invoice receipt form contract signature stamp date time
    address phone email amount currency tax rate balance sheet cash flow asset assets liability equity
    share shares stock index fund bond interest loan credit debit account bank payment order orders
    shipment delivery inventory warehouse factory machine defect crack scratch surface quality
    inspection medical patient scan xray lesion doctor hospital building road river bridge tree
    car person people face hand dog cat bird sky water grass cloud light dark color colour shape
    circle square triangle line lines bar bars dot dots point points grid background foreground
    visible hidden shown showing shows show appears appear looks contains include includes including
    approximately roughly exactly about nearly almost around between among across along within
    without during until while whereas however therefore thus because although unless whether
    """

_ZH_TEXT = """
    图片 图像 照片 图表 表格 标题 图例 坐标 横轴 纵轴 数据 数值 数字 单位 年份 月份 季度 日期 时间
    最高 最低 最大 最小 平均 总计 合计 比例 百分比 增长 下降 上升 减少 增加 变化 趋势 对比 比较
    公司 市场 业务 财务 收入 利润 亏损 成本 费用 价格 客户 产品 服务 销售 地区 国家 城市 北方 南方
    东部 西部 中部 左侧 右侧 顶部 底部 中间 上方 下方 之前 之后 第一 第二 第三 第四 最后 问题 回答
    请问 描述 解释 总结 提取 返回 输出 输入 结果 字段 对象 数组 字符串 格式 列表 项目 名称 类型
    内容 消息 用户 助手 系统 模型 服务器 请求 响应 错误 状态 健康 指标 检测 区域 裁剪 扫描 发票
    收据 表单 合同 签名 印章 地址 电话 邮箱 金额 货币 税率 余额 现金 资产 负债 股票 指数 基金
    债券 利息 贷款 信用 付款 订单 发货 库存 仓库 工厂 机器 缺陷 裂纹 划痕 表面 质量 检查 医疗
    病人 医生 医院 建筑 道路 河流 桥梁 树木 汽车 人员 人们 面部 天空 草地 云朵 颜色 形状 圆形
    方形 三角形 线条 柱子 点位 网格 背景 前景 可见 显示 包含 包括 大约 接近 几乎 之间 其中 但是
    因此 所以 因为 虽然 如果 是否 我们 你们 他们 这个 那个 这些 那些 什么 哪个 哪些 多少 怎么 为什么
    可以 需要 应该 已经 正在 没有 不是 就是 还是 或者 以及 并且 同时 然后 目前 今年 去年 明年 每年
    每月 每天 上半年 下半年 同比 环比 营收 毛利率 净利率 市盈率 现金流 资产负债表 利润表 年度报告
    季度报告 财报 分析 报告 文档 页面 文本 识别 理解 回答 视频 画面 帧 秒 分钟 小时 温度 湿度
    压力 速度 距离 重量 面积 体积 人口 学生 老师 学校 中国 北京 上海 深圳 广州 杭州 成都 武汉
    """

EN_WORDS: tuple[str, ...] = tuple(_EN_TEXT.split())
ZH_WORDS: tuple[str, ...] = tuple(_ZH_TEXT.split())
